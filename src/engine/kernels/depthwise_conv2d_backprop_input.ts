/**
 * DepthwiseConv2dNativeBackpropInput for the wasm backend (which ships none): the usual
 * transposed-convolution identity, built from wasm kernels,
 *
 *   dx = depthwiseConv2d(dilate(dy, strides), reverse(filter, [0, 1]), stride 1,
 *                        padding (kh-1-top, kw-1-left)), summed over the channel multiplier.
 *
 * dy is dilated by zero-insertion (see dilate). The flipped filter is applied with
 * multiplier 1 over the C*M channels, then the M outputs of each input channel are summed
 * (skipped when M = 1).
 */
import { backend_util, DepthwiseConv2dNativeBackpropInput, util } from '@tensorflow/tfjs-core';
import type {
  DepthwiseConv2dNativeBackpropInputAttrs,
  DepthwiseConv2dNativeBackpropInputInputs,
  KernelConfig,
  KernelFunc,
  TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  assertDilationsOne, assertFloat32, cropTo, dilate, disposeAll, input, reshape, runWasm, transposedConvPads,
  type WasmBackendLike,
} from './wasm_ops.js';

const NAME = DepthwiseConv2dNativeBackpropInput;

export function depthwiseConv2dBackpropInput(args: {
  inputs: DepthwiseConv2dNativeBackpropInputInputs;
  backend: WasmBackendLike;
  attrs: DepthwiseConv2dNativeBackpropInputAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const dy = input(NAME, inputs, 'dy');
  const filter = input(NAME, inputs, 'filter');
  const { strides, dilations, pad: padding, dimRoundingMode, inputShape } = attrs;
  assertFloat32(NAME, dy, filter);
  assertDilationsOne(NAME, dilations);

  const info = backend_util.computeConv2DInfo(
    inputShape, filter.shape as [number, number, number, number], strides, 1, padding,
    dimRoundingMode, true);
  const { batchSize, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  const { inHeight, inWidth, outHeight, outWidth, inChannels, outChannels } = info;
  const chMul = outChannels / inChannels;
  util.assert(util.arraysEqual(dy.shape, info.outShape) && Number.isInteger(chMul),
    () => `${NAME}: dy ${dy.shape} and filter ${info.filterShape} do not match input ${info.inShape}`);

  const dyDil = dilate(backend, dy, sh, sw);
  const flipped = runWasm('Reverse', backend, { x: filter }, { dims: [0, 1] });
  const flippedDw = reshape(backend, flipped, [kh, kw, outChannels, 1]);
  const toFree = dyDil === dy ? [flipped, flippedDw] : [dyDil, flipped, flippedDw];

  const [pt, pb, rowBegin] = transposedConvPads(dyDil.shape[1]!, kh, kh - 1 - info.padInfo.top, inHeight);
  const [pl, pr, colBegin] = transposedConvPads(dyDil.shape[2]!, kw, kw - 1 - info.padInfo.left, inWidth);
  const conv = runWasm('DepthwiseConv2dNative', backend, { x: dyDil, filter: flippedDw }, {
    strides: [1, 1],
    dilations: [1, 1],
    pad: [[0, 0], [pt, pb], [pl, pr], [0, 0]],
  });
  disposeAll(backend, ...toFree);

  const cropped = cropTo(backend, conv, [0, rowBegin, colBegin, 0],
    [batchSize, inHeight, inWidth, outChannels]);
  if (cropped !== conv) disposeAll(backend, conv);
  if (chMul === 1) return cropped;
  const split = reshape(backend, cropped, [batchSize, inHeight, inWidth, inChannels, chMul]);
  const dx = runWasm('Sum', backend, { x: split }, { axis: [4], keepDims: false });
  disposeAll(backend, cropped, split);
  return dx;
}

export const depthwiseConv2dBackpropInputConfig: KernelConfig = {
  kernelName: NAME,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dBackpropInput as unknown as KernelFunc,
};
