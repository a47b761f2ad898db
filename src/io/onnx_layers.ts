/**
 * The few ONNX operations tfjs-layers has no standard layer for, as small registered layer
 * classes (so models holding them clone, save as tfjs and reload). Everything else an ONNX
 * graph holds becomes a standard layer (Conv2D, BatchNormalization, Dense, ...).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

type Shape = (number | null)[];
type Kwargs = Record<string, unknown>;
const one = (x: tf.Tensor | tf.Tensor[]): tf.Tensor => (Array.isArray(x) ? x[0]! : x);

export type ConstOp = 'add' | 'sub' | 'mul' | 'div' | 'rsub' | 'rdiv';

/**
 * x (op) c with a constant c: one value, one per channel (last axis), or of `shape`
 * (broadcast against the trailing axes, e.g. [H, W, 1]). ONNX Add/Sub/Mul/Div with a
 * constant; also the per-position divisor of an average pool that does not count pads.
 */
export class OnnxConstArith extends tfl.layers.Layer {
  static className = 'OnnxConstArith';
  readonly op: ConstOp;
  readonly value: number[];
  readonly shape?: number[];

  constructor(args: { op: ConstOp; value: number[]; shape?: number[]; name?: string }) {
    super(args as never);
    this.op = args.op;
    this.value = args.value;
    if (args.shape) this.shape = args.shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = one(inputs);
      const c = this.shape ? tf.tensor(this.value, this.shape) : this.value.length === 1 ? tf.scalar(this.value[0]!) : tf.tensor1d(this.value);
      switch (this.op) {
        case 'add': return tf.add(x, c);
        case 'sub': return tf.sub(x, c);
        case 'mul': return tf.mul(x, c);
        case 'div': return tf.div(x, c);
        case 'rsub': return tf.sub(c, x);
        default: return tf.div(c, x);
      }
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), op: this.op, value: this.value, ...(this.shape ? { shape: this.shape } : {}) };
  }
}

/** ONNX HardSigmoid: max(0, min(1, alpha * x + beta)) (torch uses alpha 1/6, Keras' built-in 0.2). */
export class OnnxHardSigmoid extends tfl.layers.Layer {
  static className = 'OnnxHardSigmoid';
  readonly alpha: number;
  readonly beta: number;

  constructor(args: { alpha: number; beta: number; name?: string }) {
    super(args as never);
    this.alpha = args.alpha;
    this.beta = args.beta;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => tf.clipByValue(tf.add(tf.mul(one(inputs), this.alpha), this.beta), 0, 1));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), alpha: this.alpha, beta: this.beta };
  }
}

/** ONNX HardSwish: x * max(0, min(1, x / 6 + 0.5)). */
export class OnnxHardSwish extends tfl.layers.Layer {
  static className = 'OnnxHardSwish';

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = one(inputs);
      return tf.mul(x, tf.clipByValue(tf.add(tf.div(x, 6), 0.5), 0, 1));
    });
  }
}

/** ONNX Clip with bounds no standard layer has (ReLU6 and ReLU map to standard layers). null: unbounded. */
export class OnnxClip extends tfl.layers.Layer {
  static className = 'OnnxClip';
  readonly min: number | null;
  readonly max: number | null;

  constructor(args: { min: number | null; max: number | null; name?: string }) {
    super(args as never);
    this.min = args.min;
    this.max = args.max;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      let x = one(inputs);
      if (this.min !== null) x = tf.maximum(x, this.min);
      if (this.max !== null) x = tf.minimum(x, this.max);
      return x;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), min: this.min, max: this.max };
  }
}

/** a - b of two tensors of one shape (ONNX Sub; tfjs-layers has Add and Multiply but no Subtract). */
export class OnnxSub extends tfl.layers.Layer {
  static className = 'OnnxSub';

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    const xs = inputs as tf.Tensor[];
    return tf.sub(xs[0]!, xs[1]!);
  }
}

/**
 * Spatial padding of an NHWC tensor with a constant other than 0 (ZeroPadding2D covers 0):
 * -Infinity before a max-pool whose ONNX pads are not TensorFlow's 'same'. value null: -Infinity.
 */
export class OnnxPad2D extends tfl.layers.Layer {
  static className = 'OnnxPad2D';
  readonly padding: [[number, number], [number, number]];
  readonly value: number | null;

  constructor(args: { padding: [[number, number], [number, number]]; value: number | null; name?: string }) {
    super(args as never);
    this.padding = args.padding;
    this.value = args.value;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const s = inputShape as Shape;
    const [[t, b], [l, r]] = this.padding;
    return [s[0]!, s[1] === null ? null : s[1]! + t + b, s[2] === null ? null : s[2]! + l + r, s[3]!];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    const [[t, b], [l, r]] = this.padding;
    return tf.pad(one(inputs) as tf.Tensor4D, [[0, 0], [t, b], [l, r], [0, 0]], this.value ?? -Infinity);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), padding: this.padding, value: this.value };
  }
}

export const ONNX_LAYER_CLASSES = [OnnxConstArith, OnnxHardSigmoid, OnnxHardSwish, OnnxClip, OnnxSub, OnnxPad2D];
for (const cls of ONNX_LAYER_CLASSES) tf.serialization.registerClass(cls as never);
