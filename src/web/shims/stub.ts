/** Native Node packages (sharp, onnxruntime-node, synckit) are not in the page: importing one fails with a clear reason. */
function unavailable(): never {
  throw new Error('not available in the browser (native Node module)');
}
export default new Proxy({}, { get: unavailable });
export const createSyncFn = unavailable;
export const InferenceSession = { create: unavailable };
export const Tensor = unavailable;
export const env = {};
