import { FLOAT_FORMATS, type HalfDType } from "@nbit/core";
import type * as tfc from "@tensorflow/tfjs-core";

type Tf = typeof tfc;
type T = tfc.Tensor;

/**
 * Rounds float32 values to the nearest value of a narrow float format (a row of core's
 * FLOAT_FORMATS), ties to even, with tfjs ops on the device: find each value's exact binary
 * exponent, scale so one unit in the last place of the format is 1, round (tf.round rounds half
 * to even), and scale back. Scaling by powers of two is exact, so the result is bit-identical to
 * core's conversion, subnormals, overflow to Infinity, signed zeros and NaN included.
 */
export function roundToHalf(tf: Tf, x: T, format: HalfDType): T {
  const { mantissaBits, minExponent, maxFinite } = FLOAT_FORMATS[format];
  return tf.tidy(() => {
    const a = tf.abs(x);
    const special = tf.logicalOr(tf.logicalOr(tf.isNaN(x), tf.isInf(x)), tf.equal(a, 0));
    const safe = tf.where(special, tf.onesLike(a), a);
    // log2 is approximate near powers of two; one correction step each way makes the exponent exact.
    let e = tf.floor(tf.div(tf.log(safe), Math.LN2));
    e = tf.where(tf.less(safe, tf.pow(2, e)), tf.sub(e, 1), e);
    e = tf.where(tf.greaterEqual(safe, tf.pow(2, tf.add(e, 1))), tf.add(e, 1), e);
    const ulp = tf.pow(2, tf.sub(tf.maximum(e, minExponent), mantissaBits));
    let q = tf.mul(tf.round(tf.div(safe, ulp)), ulp);
    q = tf.where(tf.greater(q, maxFinite), tf.fill(q.shape, Infinity), q);
    // Negate rather than multiply by the sign, so values that round to zero keep a negative zero.
    const signed = tf.where(tf.less(x, 0), tf.neg(q), q);
    return tf.where(special, x, signed);
  });
}
