/**
 * Conv2DBackpropFilter for the wasm backend (which ships none, so model.fit of a conv net
 * fails there). Composed from wasm kernels so the heavy lifting runs in XNNPACK:
 *
 *   dW[i,j,c,o] = sum_{b,p,q} x[b, p*sh + i - top, q*sw + j - left, c] * dy[b, p, q, o]
 *
 * is a Conv2D whose "images" are the input channels c, whose "channels" are the batch b and
 * whose kernel is dy itself: conv2d(x as (C,H,W,B), dy as (OH,OW,B,O), stride 1,
 * dilation = forward stride, explicit padding = forward padding) -> (C,KH',KW',O), cropped to
 * (KH,KW) and transposed to (KH,KW,C,O). Same FLOPs as the forward conv; the extra cost is
 * two transposes and XNNPACK repacking dy as weights (it is a fresh filter on every call).
 * (Measured alternative, im2col via StridedSlice/Concat + BatchMatMul, was ~1.5x slower.)
 */
import { backend_util, Conv2DBackpropFilter, util } from '@tensorflow/tfjs-core';
import type {
  Conv2DBackpropFilterAttrs,
  Conv2DBackpropFilterInputs,
  KernelConfig,
  KernelFunc,
  TensorInfo,
} from '@tensorflow/tfjs-core';
import { assertFloat32, input, cropTo, disposeAll, runWasm, transpose, type WasmBackendLike } from './wasm_ops.js';

type Shape4 = [number, number, number, number];

export function conv2dBackpropFilter(args: {
  inputs: Conv2DBackpropFilterInputs;
  backend: WasmBackendLike;
  attrs: Conv2DBackpropFilterAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = input(Conv2DBackpropFilter, inputs, 'x');
  const dy = input(Conv2DBackpropFilter, inputs, 'dy');
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  assertFloat32(Conv2DBackpropFilter, x, dy);

  const info = backend_util.computeConv2DInfo(
    x.shape as Shape4, filterShape, strides, 1, pad, dimRoundingMode, false,
    backend_util.convertConv2DDataFormat(dataFormat));
  const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const { inHeight, inWidth, outHeight, outWidth, inChannels, outChannels } = info;
  util.assert(util.arraysEqual(dy.shape, info.outShape) && inChannels === filterShape[2],
    () => `${Conv2DBackpropFilter}: x ${x.shape}, dy ${dy.shape} and filter ${filterShape} do not match`);

  // Pad just enough that every tap (oh-1)*s + k - 1 is inside; more would only add rows to crop.
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const bottom = Math.max(0, (outHeight - 1) * sh + kh - top - inHeight);
  const right = Math.max(0, (outWidth - 1) * sw + kw - left - inWidth);

  const channelsLast = info.dataFormat === 'channelsLast';
  const xT = transpose(backend, x, channelsLast ? [3, 1, 2, 0] : [1, 2, 3, 0]); // (C,H,W,B)
  const dyT = transpose(backend, dy, channelsLast ? [1, 2, 0, 3] : [2, 3, 0, 1]); // (OH,OW,B,O)
  const conv = runWasm('Conv2D', backend, { x: xT, filter: dyT }, {
    strides: [1, 1],
    dilations: [sh, sw],
    pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
    dataFormat: 'NHWC',
  });
  disposeAll(backend, xT, dyT); // also frees the XNNPACK operator cached on dyT
  const cropped = cropTo(backend, conv, [0, 0, 0, 0], [inChannels, kh, kw, outChannels]);
  if (cropped !== conv) disposeAll(backend, conv);
  const dW = transpose(backend, cropped, [1, 2, 0, 3]);
  disposeAll(backend, cropped);
  return dW;
}

export const conv2dBackpropFilterConfig: KernelConfig = {
  kernelName: Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilter as unknown as KernelFunc,
};
