import type * as tfc from "@tensorflow/tfjs-core";

type Tf = typeof tfc;
type T = tfc.Tensor;

interface HalfFormat {
  /** Explicit mantissa bits. */
  readonly mantissa: number;
  /** Exponent of the smallest normal value. */
  readonly minExponent: number;
  /** Largest finite value; anything that rounds above it is Infinity. */
  readonly max: number;
}

const FORMATS: Record<"float16" | "bfloat16", HalfFormat> = {
  float16: { mantissa: 10, minExponent: -14, max: 65504 },
  bfloat16: { mantissa: 7, minExponent: -126, max: 3.3895313892515355e38 },
};

/**
 * Rounds float32 values to the nearest float16/bfloat16 value, ties to even, with tfjs ops on the
 * device: find each value's exact binary exponent, scale so one unit in the last place of the
 * 16-bit format is 1, round (tf.round rounds half to even), and scale back. Scaling by powers of
 * two is exact, so the result is bit-identical to core's conversion, subnormals, overflow to
 * Infinity, signed zeros and NaN included.
 */
export function roundToHalf(tf: Tf, x: T, format: "float16" | "bfloat16"): T {
  const { mantissa, minExponent, max } = FORMATS[format];
  return tf.tidy(() => {
    const a = tf.abs(x);
    const special = tf.logicalOr(tf.logicalOr(tf.isNaN(x), tf.isInf(x)), tf.equal(a, 0));
    const safe = tf.where(special, tf.onesLike(a), a);
    // log2 is approximate near powers of two; one correction step each way makes the exponent exact.
    let e = tf.floor(tf.div(tf.log(safe), Math.LN2));
    e = tf.where(tf.less(safe, tf.pow(2, e)), tf.sub(e, 1), e);
    e = tf.where(tf.greaterEqual(safe, tf.pow(2, tf.add(e, 1))), tf.add(e, 1), e);
    const ulp = tf.pow(2, tf.sub(tf.maximum(e, minExponent), mantissa));
    let q = tf.mul(tf.round(tf.div(safe, ulp)), ulp);
    q = tf.where(tf.greater(q, max), tf.fill(q.shape, Infinity), q);
    // Negate rather than multiply by the sign, so values that round to zero keep a negative zero.
    const signed = tf.where(tf.less(x, 0), tf.neg(q), q);
    return tf.where(special, x, signed);
  });
}
