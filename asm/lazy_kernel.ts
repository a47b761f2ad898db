// AssemblyScript source of the lazy pooled kernel's WebAssembly build (src/defense/lazy_wasm.ts
// embeds the compiled module; regenerate it with `node scripts/build-wasm.mjs`). The same
// algorithm and float64 arithmetic, in the same order, as `pooledShare` in
// src/defense/lazy_kernel.ts, which stays the reference (tests compare the two).
//
// Memory is laid out by the host (byte offsets): W f32 (c*u) at pW, bias f32 (u) at pB, the
// block's values f32 (m*c) at pF, the pruning order i32 (last) at pO; outputs: labels i32 and
// flags u8, ((last+1)*m) each, step-major (stride m), at pL and pA; f64 scratch: decPos and
// decNeg (c*u) at pDP and pDN, wAbs (c) at pWA, W by unit (u*c) at pWT, z (u) at pZ.

/** The per-channel bounds and W by unit, once per call of the host. */
export function prepare(c: i32, u: i32, pW: usize, pDP: usize, pDN: usize, pWA: usize, pWT: usize): void {
  for (let ch = 0; ch < c; ch++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < u; j++) {
      const w = <f64>load<f32>(pW + (<usize>(ch * u + j) << 2));
      lo = Math.min(lo, w);
      hi = Math.max(hi, w);
    }
    for (let a = 0; a < u; a++) {
      const w = <f64>load<f32>(pW + (<usize>(ch * u + a) << 2));
      store<f64>(pDP + (<usize>(ch * u + a) << 3), (w - lo) * 1.001);
      store<f64>(pDN + (<usize>(ch * u + a) << 3), (hi - w) * 1.001);
    }
    store<f64>(pWA + (<usize>ch << 3), Math.max(hi, -lo) * 1.001);
    for (let j = 0; j < u; j++) store<f64>(pWT + (<usize>(j * c + ch) << 3), <f64>load<f32>(pW + (<usize>(ch * u + j) << 2)));
  }
}

/** Images [i0, i1) of the block of m: labels and flags at steps 0..last; returns how many image-steps read the logits. */
export function run(c: i32, u: i32, m: i32, i0: i32, i1: i32, last: i32, tol: f64,
  pW: usize, pB: usize, pF: usize, pO: usize, pL: usize, pA: usize,
  pDP: usize, pDN: usize, pWA: usize, pWT: usize, pZ: usize): i32 {
  let computed = 0;
  for (let i = i0; i < i1; i++) {
    const fr = pF + (<usize>(i * c) << 2);
    for (let j = 0; j < u; j++) {
      let sum = <f64>load<f32>(pB + (<usize>j << 2));
      const w = pWT + (<usize>(j * c) << 3);
      for (let ch = 0; ch < c; ch++) sum += <f64>load<f32>(fr + (<usize>ch << 2)) * load<f64>(w + (<usize>ch << 3));
      store<f64>(pZ + (<usize>j << 3), sum);
    }
    if (!isFinite(load<f64>(pZ))) {
      // A non-finite value among this image's f reaches every logit: all its steps exactly.
      for (let k = 0; k <= last; k++) {
        store<i32>(pL + (<usize>(k * m + i) << 2), 0);
        store<u8>(pA + <usize>(k * m + i), 1);
      }
      continue;
    }
    let synced = 0;
    let lab = 0;
    let second = 0;
    let gap2 = -Infinity;
    let gap3 = -Infinity;
    let top: f64 = 0;
    let fall: f64 = 0;
    let grow: f64 = 0;
    for (let k = 0; k <= last; k++) {
      const o = k * m + i;
      if (k > 0) {
        const ch = load<i32>(pO + (<usize>(k - 1) << 2));
        const fv = <f64>load<f32>(fr + (<usize>ch << 2));
        const w = ch * u;
        gap2 -= fv * (<f64>load<f32>(pW + (<usize>(w + lab) << 2)) - <f64>load<f32>(pW + (<usize>(w + second) << 2)));
        fall += fv >= 0 ? fv * load<f64>(pDP + (<usize>(w + lab) << 3)) : -fv * load<f64>(pDN + (<usize>(w + lab) << 3));
        grow += Math.abs(fv) * load<f64>(pWA + (<usize>ch << 3));
        const need = tol * (1 + top + grow);
        if (gap2 > need && gap3 - fall > need) {
          store<i32>(pL + (<usize>o << 2), lab);
          store<u8>(pA + <usize>o, 0);
          continue;
        }
        for (let q = synced; q < k; q++) {
          const cq = load<i32>(pO + (<usize>q << 2));
          const v = <f64>load<f32>(fr + (<usize>cq << 2));
          const wq = cq * u;
          for (let j = 0; j < u; j++) {
            const pz = pZ + (<usize>j << 3);
            store<f64>(pz, load<f64>(pz) - v * <f64>load<f32>(pW + (<usize>(wq + j) << 2)));
          }
        }
        synced = k;
      }
      // Top three (first index wins ties, as argMax).
      let v1 = -Infinity;
      let v2 = -Infinity;
      let v3 = -Infinity;
      let b1 = 0;
      let b2 = 0;
      let nan = false;
      for (let j = 0; j < u; j++) {
        const y = load<f64>(pZ + (<usize>j << 3));
        if (y > v1) { v3 = v2; v2 = v1; b2 = b1; v1 = y; b1 = j; } else if (y > v2) { v3 = v2; v2 = y; b2 = j; } else if (y > v3) v3 = y; else if (y != y) nan = true;
      }
      const ok = !nan && v1 - v2 > tol * (1 + Math.abs(v1));
      store<i32>(pL + (<usize>o << 2), b1);
      store<u8>(pA + <usize>o, ok ? 0 : 1);
      lab = b1;
      second = b2;
      gap2 = ok ? v1 - v2 : -Infinity;
      gap3 = ok ? v1 - v3 : -Infinity;
      top = Math.abs(v1);
      fall = 0;
      grow = 0;
      computed++;
    }
  }
  return computed;
}

/** Per step k < steps: how many i < n have labels[k*n+i] == truth[i] >= 0 (i32 counts at pOut). */
export function stepCorrect(pL: usize, pY: usize, n: i32, steps: i32, pOut: usize): void {
  for (let k = 0; k < steps; k++) {
    let correct = 0;
    const row = pL + (<usize>k * <usize>n << 2);
    for (let i = 0; i < n; i++) {
      const y = load<i32>(pY + (<usize>i << 2));
      if (y >= 0 && load<i32>(row + (<usize>i << 2)) == y) correct++;
    }
    store<i32>(pOut + (<usize>k << 2), correct);
  }
}

/** Per step: how many i have labels[k*n+i] == target and (all, or truth[i] != target). */
export function stepHits(pL: usize, pY: usize, n: i32, steps: i32, target: i32, all: i32, pOut: usize): void {
  for (let k = 0; k < steps; k++) {
    let hits = 0;
    const row = pL + (<usize>k * <usize>n << 2);
    for (let i = 0; i < n; i++) {
      if (load<i32>(row + (<usize>i << 2)) == target && (all != 0 || load<i32>(pY + (<usize>i << 2)) != target)) hits++;
    }
    store<i32>(pOut + (<usize>k << 2), hits);
  }
}
