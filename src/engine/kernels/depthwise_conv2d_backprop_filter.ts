/**
 * DepthwiseConv2dNativeBackpropFilter for the wasm backend (which ships none). Same idea as
 * Conv2DBackpropFilter, but a depthwise conv cannot contract over the batch through its
 * channel axis, so the batch is folded into height instead:
 *
 *   dW[i,j,c,m] = sum_{b,p,q} x[b, p*sh + i - top, q*sw + j - left, c] * dy[b, p, q, c*M + m]
 *
 * Each image is zero-padded to Hp rows (Hp a multiple of sh, >= (oh-1)*sh + kh) and the batch
 * stacked into one (1, B*Hp, Wp, C) image; dy, padded to Hp/sh rows per image, is stacked the
 * same way into a (B*Hp/sh, OW, C, M) depthwise filter. With dilation (sh, sw) kernel row
 * b*Hp/sh + p lands on image b, row p*sh + i, so one DepthwiseConv2dNative gives (1, >=KH, >=KW,
 * C*M), cropped to dW. Real dy rows only meet their own image (Hp covers every tap), and the
 * filter's zero rows (p >= OH) add nothing wherever they land, so images do not mix.
 */
import { backend_util, DepthwiseConv2dNativeBackpropFilter, util } from '@tensorflow/tfjs-core';
import type {
  DepthwiseConv2dNativeBackpropFilterAttrs,
  DepthwiseConv2dNativeBackpropFilterInputs,
  KernelConfig,
  KernelFunc,
  TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  assertDilationsOne, assertFloat32, input, cropTo, disposeAll, pad, reshape, runWasm, type WasmBackendLike,
} from './wasm_ops.js';

type Shape4 = [number, number, number, number];
const NAME = DepthwiseConv2dNativeBackpropFilter;

export function depthwiseConv2dBackpropFilter(args: {
  inputs: DepthwiseConv2dNativeBackpropFilterInputs;
  backend: WasmBackendLike;
  attrs: DepthwiseConv2dNativeBackpropFilterAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = input(NAME, inputs, 'x');
  const dy = input(NAME, inputs, 'dy');
  const { strides, dilations, pad: padding, dimRoundingMode, filterShape } = attrs;
  assertFloat32(NAME, x, dy);
  assertDilationsOne(NAME, dilations);

  const info = backend_util.computeConv2DInfo(
    x.shape as Shape4, filterShape, strides, 1, padding, dimRoundingMode, true);
  const { batchSize, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const { inHeight, inWidth, outHeight, outWidth, inChannels, outChannels } = info;
  const chMul = outChannels / inChannels;
  util.assert(util.arraysEqual(dy.shape, info.outShape) && Number.isInteger(chMul),
    () => `${NAME}: dy ${dy.shape} and filter ${info.filterShape} do not match input ${info.inShape}`);

  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rowsPerImage = Math.ceil(Math.max(inHeight + top, (outHeight - 1) * sh + kh) / sh); // Hp / sh
  const hp = rowsPerImage * sh;
  const right = Math.max(0, (outWidth - 1) * sw + kw - left - inWidth);
  const wp = inWidth + left + right;

  const xPad = pad(backend, x, [[0, 0], [top, hp - inHeight - top], [left, right], [0, 0]]);
  const xStack = reshape(backend, xPad, [1, batchSize * hp, wp, inChannels]);
  const dyPad = pad(backend, dy, [[0, 0], [0, rowsPerImage - outHeight], [0, 0], [0, 0]]);
  const filter = reshape(backend, dyPad, [batchSize * rowsPerImage, outWidth, inChannels, chMul]);
  // The filter spans B*hp - sh + 1 rows, so kh - sh more rows (zeros, met only by the last
  // image's zero filter rows) are needed below to get kh output rows.
  const conv = runWasm('DepthwiseConv2dNative', backend, { x: xStack, filter }, {
    strides: [1, 1],
    dilations: [sh, sw],
    pad: [[0, 0], [0, Math.max(0, kh - sh)], [0, 0], [0, 0]],
  });
  disposeAll(backend, xPad, xStack, dyPad, filter);
  // conv is (1, max(kh, sh), wp - (outWidth-1)*sw >= kw, C*M).
  const cropped = cropTo(backend, conv, [0, 0, 0, 0], [1, kh, kw, outChannels]);
  if (cropped !== conv) disposeAll(backend, conv);
  const dW = reshape(backend, cropped, [kh, kw, inChannels, chMul]);
  disposeAll(backend, cropped);
  return dW;
}

export const depthwiseConv2dBackpropFilterConfig: KernelConfig = {
  kernelName: NAME,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dBackpropFilter as unknown as KernelFunc,
};
