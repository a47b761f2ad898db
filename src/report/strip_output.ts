/** STRIP's outputs on disk: strip.json and the entropy histogram, written as one folder. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeAtomically } from '../io/atomic.js';
import { stripHistogram, writeFigure, type Figure } from './figures.js';
import { percent } from './table.js';
import type { StripResult } from '../detect/strip.js';

export function stripFigure(r: StripResult): Promise<Figure> {
  return stripHistogram({
    clean: r.cleanTest?.entropies ?? r.calibration.entropies,
    poisoned: r.poisonedTest?.entropies ?? [],
    threshold: r.threshold,
    subtitle: histogramSubtitle(r),
  });
}

/** strip.json (`json`, default the result) and the histogram in `out`, atomically. */
export async function writeStripOutput(out: string, r: StripResult, json: unknown = r, overwrite?: boolean): Promise<void> {
  const fig = await stripFigure(r);
  await writeAtomically(out, async (tmp) => {
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'strip.json'), `${JSON.stringify(json, null, 2)}\n`);
    await writeFigure(tmp, fig);
  }, { overwrite, folder: true });
}

function histogramSubtitle(r: StripResult): string {
  const parts = [`N = ${r.settings.n} blends per input; flagged when H < ${r.threshold.toFixed(4)}`];
  parts.push(r.cleanTest ? `FRR ${percent(r.cleanTest.frr)} (clean test)` : `clean: calibration set, FRR ${percent(r.calibration.frr)}`);
  if (r.poisonedTest) parts.push(`FAR ${percent(r.poisonedTest.far)}`);
  return `${parts.join('; ')}.`;
}
