/**
 * Replacement for the wasm backend's Conv2DBackpropInput, which exists but is a scalar C++ loop:
 * ~10x slower than the backend's own XNNPACK Conv2D on the same shapes, and half of a DeepID
 * training step. Transposed-convolution identity, built from wasm kernels:
 *
 *   dx = conv2d(dilate(dy, strides), reverse(filter, [0, 1]) as (KH,KW,O,C), stride 1,
 *               padding (kh-1-top, kw-1-left)), cropped to the input shape.
 *
 * NCHW goes to the native kernel. Opt-in: see registerWasmKernelOverrides.
 */
import { backend_util, Conv2DBackpropInput, util } from '@tensorflow/tfjs-core';
import type {
  Conv2DBackpropInputAttrs,
  Conv2DBackpropInputInputs,
  KernelFunc,
  TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  assertFloat32, cropTo, dilate, disposeAll, input, runWasm, transpose, transposedConvPads, type WasmBackendLike,
} from './wasm_ops.js';

type Shape4 = [number, number, number, number];

export function makeConv2dBackpropInput(native: KernelFunc): KernelFunc {
  const kernel = (args: {
    inputs: Conv2DBackpropInputInputs;
    backend: WasmBackendLike;
    attrs: Conv2DBackpropInputAttrs;
  }): TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
    if (dataFormat === 'NCHW') return native(args as unknown as Parameters<KernelFunc>[0]);
    const dy = input(Conv2DBackpropInput, inputs, 'dy');
    const filter = input(Conv2DBackpropInput, inputs, 'filter');
    assertFloat32(Conv2DBackpropInput, dy, filter);

    const info = backend_util.computeConv2DInfo(
      inputShape, filter.shape as Shape4, strides, 1, pad, dimRoundingMode, false);
    const { batchSize, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
    const { inHeight, inWidth, inChannels } = info;
    util.assert(util.arraysEqual(dy.shape, info.outShape),
      () => `${Conv2DBackpropInput}: dy ${dy.shape} and filter ${filter.shape} do not match input ${inputShape}`);

    const dyDil = dilate(backend, dy, sh, sw);
    const flipped = runWasm('Reverse', backend, { x: filter }, { dims: [0, 1] });
    const filterT = transpose(backend, flipped, [0, 1, 3, 2]); // (KH,KW,O,C)
    const [pt, pb, rowBegin] = transposedConvPads(dyDil.shape[1]!, kh, kh - 1 - info.padInfo.top, inHeight);
    const [pl, pr, colBegin] = transposedConvPads(dyDil.shape[2]!, kw, kw - 1 - info.padInfo.left, inWidth);
    const conv = runWasm('Conv2D', backend, { x: dyDil, filter: filterT }, {
      strides: [1, 1],
      dilations: [1, 1],
      pad: [[0, 0], [pt, pb], [pl, pr], [0, 0]],
      dataFormat: 'NHWC',
    });
    disposeAll(backend, flipped, filterT, ...(dyDil === dy ? [] : [dyDil]));
    const dx = cropTo(backend, conv, [0, rowBegin, colBegin, 0], [batchSize, inHeight, inWidth, inChannels]);
    if (dx !== conv) disposeAll(backend, conv);
    return dx;
  };
  return kernel as unknown as KernelFunc;
}
