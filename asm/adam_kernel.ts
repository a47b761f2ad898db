// AssemblyScript source of the ort training engine's Adam step (src/models/adam_wasm.ts embeds
// the compiled module; regenerate it with `node scripts/build-wasm.mjs`). The same float32
// operations in the same order as `adamLoop` in src/models/ort_train.ts (every operation
// rounded to float32, as tf.train.adam), four lanes at a time; tests compare the two.
//
// Memory is laid out by the host (byte offsets, 16-byte aligned): weights W, moments M and V,
// and nG gradient vectors G (n f32 each, from pG, each starting 16-byte aligned), summed in order first:
//   g = G0 + G1 + ...; m = b1 m + c1 g; v = b2 v + c2 (g g);
//   w = ((m / a1) / (sqrt(v / a2) + eps)) * negLr + w.

export function adam(n: i32, pW: usize, pM: usize, pV: usize, pG: usize, nG: i32,
  b1: f32, b2: f32, c1: f32, c2: f32, negLr: f32, eps: f32, a1: f32, a2: f32): void {
  const vb1 = f32x4.splat(b1), vb2 = f32x4.splat(b2), vc1 = f32x4.splat(c1), vc2 = f32x4.splat(c2);
  const vlr = f32x4.splat(negLr), veps = f32x4.splat(eps), va1 = f32x4.splat(a1), va2 = f32x4.splat(a2);
  const stride = <usize>((n + 3) & ~3) << 2; // each slot 16-byte aligned
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    let g = v128.load(pG + o);
    for (let k = 1; k < nG; k++) g = f32x4.add(g, v128.load(pG + <usize>k * stride + o));
    const m = f32x4.add(f32x4.mul(v128.load(pM + o), vb1), f32x4.mul(g, vc1));
    const v = f32x4.add(f32x4.mul(v128.load(pV + o), vb2), f32x4.mul(f32x4.mul(g, g), vc2));
    v128.store(pM + o, m);
    v128.store(pV + o, v);
    const step = f32x4.mul(f32x4.div(f32x4.div(m, va1), f32x4.add(f32x4.sqrt(f32x4.div(v, va2)), veps)), vlr);
    v128.store(pW + o, f32x4.add(step, v128.load(pW + o)));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    let g = load<f32>(pG + o);
    for (let k = 1; k < nG; k++) g = g + load<f32>(pG + <usize>k * stride + o);
    const m = load<f32>(pM + o) * b1 + g * c1;
    const v = load<f32>(pV + o) * b2 + (g * g) * c2;
    store<f32>(pM + o, m);
    store<f32>(pV + o, v);
    store<f32>(pW + o, ((m / a1) / (Mathf.sqrt(v / a2) + eps)) * negLr + load<f32>(pW + o));
  }
}
