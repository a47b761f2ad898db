/**
 * Where would the default engine change a result? For each lab model (DIR/models/bd_net.h5)
 * and its four CSAW sets, predictDataset with --engine tfjs and with ort (the default):
 * labels that differ, the largest probability difference, and accuracy/ASR from both.
 *
 *   npx tsc -p bench && node dist/bench/bench/engine_agreement.js /work/labs/deepid-patch [...]
 */
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import { openDataset } from '../src/io/dataset.js';
import { pixelOptionsFor } from '../src/io/preprocess.js';
import { predictDataset } from '../src/eval/predict.js';

await initBackend('wasm');
for (const dir of process.argv.slice(2)) {
  const model = await loadModel(join(dir, 'models', 'bd_net.h5'));
  for (const set of ['data/cl/valid.h5', 'data/cl/test.h5', 'data/bd/bd_valid.h5', 'data/bd/bd_test.h5']) {
    const ds = await openDataset(join(dir, set), { ...pixelOptionsFor(model, {}), expect: model.inputShape });
    try {
      const t = await predictDataset(model, ds, { engine: 'tfjs', topK: 2 });
      const o = await predictDataset(model, ds, { topK: 2 });
      let differ = 0, worst = 0, minMargin = Infinity, correctT = 0, correctO = 0;
      for (let i = 0; i < ds.length; i++) {
        if (t.labels[i] !== o.labels[i]) differ++;
        worst = Math.max(worst, Math.abs(t.top[i]! - o.top[i]!));
        minMargin = Math.min(minMargin, t.topkProbs![2 * i]! - t.topkProbs![2 * i + 1]!);
        if (t.labels[i] === ds.labels[i]) correctT++;
        if (o.labels[i] === ds.labels[i]) correctO++;
      }
      console.log(`${dir} ${set}: ${ds.length} images, engine ${o.engine}; labels differing ${differ}; max |p_top diff| ${worst.toExponential(2)}; ` +
        `smallest top-2 margin ${minMargin.toExponential(2)}; correct tfjs ${correctT} ort ${correctO}`);
    } finally {
      ds.close();
    }
  }
}
