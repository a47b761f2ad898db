/** Kernels the wasm backend lacks, registered so that training (model.fit) runs on wasm. */
export function registerWasmKernels(): void {
  // Filled in by the gradient-kernel work (Conv2DBackpropFilter, ...).
}
