/**
 * goodnet's own small WebAssembly kernels (built from asm/ by scripts/build-wasm.mjs into
 * base64 modules): compiled once per thread, instantiated by whoever needs their memory.
 */

/** The parts of the WebAssembly API used here (the Node build's lib has no WebAssembly types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

const compiled = new Map<string, object | null>();

/**
 * A new instance of the module in `base64` (a few KB: compiled synchronously, which every
 * runtime allows at that size), its exports typed as `E`; null where WebAssembly is missing or
 * refuses the module (SIMD unsupported, ...), and the caller's JS path runs instead.
 */
export function instantiateWasm<E>(base64: string): E | null {
  const wa = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
  if (!wa) return null;
  let mod = compiled.get(base64);
  if (mod === undefined) {
    try {
      const s = atob(base64);
      const bytes = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
      mod = new wa.Module(bytes);
    } catch {
      mod = null;
    }
    compiled.set(base64, mod);
  }
  if (!mod) return null;
  try {
    return new wa.Instance(mod, {}).exports as E;
  } catch {
    return null;
  }
}
