import { promoteTypes } from "../dtype.js";
import { DTypeError, ShapeError } from "../errors.js";
import { autocast, noGrad } from "../engine/context.js";
import { broadcastShapes, sameShape, type Shape } from "../engine/primitives.js";
import { customGradient, full, rawCast, realize, Tensor, tensor, where } from "../engine/tensor.js";
import { COMPLEX_PART_DTYPE, complexDTypeOf, resolveComplexDType, type ComplexDType } from "./dtype.js";

/** What complex ops take on their other side: complex, real (imaginary part zero) or a real number. */
export type ComplexOperand = ComplexTensor | Tensor | number;

export interface ComplexValues {
  readonly real: Float32Array | Float64Array;
  readonly imag: Float32Array | Float64Array;
}

/**
 * A complex tensor held as two real tensors of one dtype: float32 parts make complex64, float64
 * parts complex128. Every op is written with real tensor ops, so backends only ever see real
 * primitives, and autograd runs on the parts. For a real loss L this gives z.grad = dL/dx + i dL/dy
 * for z = x + iy: PyTorch's convention (twice the conjugate Wirtinger derivative dL/dz*).
 */
export class ComplexTensor {
  constructor(
    readonly real: Tensor,
    readonly imag: Tensor,
  ) {
    complexDTypeOf(real.dtype, "Complex tensor: the real part's dtype has no complex dtype.");
    if (real.dtype !== imag.dtype) throw new DTypeError("complex", `real and imaginary parts differ in dtype (${real.dtype} and ${imag.dtype})`);
    if (!sameShape(real.shape, imag.shape)) throw new ShapeError("complex", [real.shape, imag.shape], "real and imaginary parts differ in shape");
  }

  get dtype(): ComplexDType {
    return complexDTypeOf(this.real.dtype, "Complex tensor: the parts' dtype has no complex dtype.");
  }
  get shape(): Shape {
    return this.real.shape;
  }
  get size(): number {
    return this.real.size;
  }
  get rank(): number {
    return this.real.rank;
  }
  get requiresGrad(): boolean {
    return this.real.requiresGrad || this.imag.requiresGrad;
  }

  /** Marks both parts as requiring gradients (torch's requires_grad_()). */
  requireGrad(flag = true): this {
    this.real.requiresGrad = flag;
    this.imag.requiresGrad = flag;
    return this;
  }

  /** dL/dx + i dL/dy, from the parts' gradients (null when neither has one). */
  get grad(): ComplexTensor | null {
    const { real, imag } = this;
    if (!real.grad && !imag.grad) return null;
    return fromParts(real.grad ?? full(real.shape, 0, real.dtype), imag.grad ?? full(imag.shape, 0, imag.dtype));
  }

  detach(): ComplexTensor {
    return new ComplexTensor(this.real.detach(), this.imag.detach());
  }

  cast(dtype: ComplexDType): ComplexTensor {
    const part = COMPLEX_PART_DTYPE[resolveComplexDType(dtype)];
    return new ComplexTensor(rawCast(this.real, part), rawCast(this.imag, part));
  }

  // ---- arithmetic --------------------------------------------------------------------------

  add(other: ComplexOperand): ComplexTensor {
    if (other instanceof ComplexTensor) return fromParts(this.real.add(other.real), this.imag.add(other.imag));
    return fromParts(this.real.add(other), this.imag);
  }

  sub(other: ComplexOperand): ComplexTensor {
    if (other instanceof ComplexTensor) return fromParts(this.real.sub(other.real), this.imag.sub(other.imag));
    return fromParts(this.real.sub(other), this.imag);
  }

  /** (a + ib)(c + id) = (ac - bd) + i(ad + bc). */
  mul(other: ComplexOperand): ComplexTensor {
    if (!(other instanceof ComplexTensor)) return fromParts(this.real.mul(other), this.imag.mul(other));
    const [a, b, c, d] = [this.real, this.imag, other.real, other.imag];
    return fromParts(a.mul(c).sub(b.mul(d)), a.mul(d).add(b.mul(c)));
  }

  /**
   * Division by Smith's algorithm, the one c10::complex and NumPy use: divide through by the
   * larger of |c| and |d|, so that c² + d² never overflows or underflows. The branch is chosen
   * per element with `where`, so both branches stay differentiable.
   */
  div(other: ComplexOperand): ComplexTensor {
    if (!(other instanceof ComplexTensor)) return fromParts(this.real.div(other), this.imag.div(other));
    const [a, b, c, d] = [this.real, this.imag, other.real, other.imag];
    const [absC, absD] = [c.abs(), d.abs()];
    const swap = absC.less(absD);
    const [p, q] = [where(swap, d, c), where(swap, c, d)];
    const [u, v] = [where(swap, b, a), where(swap, a, b)];
    const rat = q.div(p);
    const den = p.add(q.mul(rat));
    const scl = full([], 1, den.dtype).div(den);
    const re = u.add(v.mul(rat)).mul(scl);
    const imSwapped = v.sub(u.mul(rat)).mul(scl);
    const im = where(swap, imSwapped.neg(), imSwapped);
    // Division by 0 + 0i: a/|c| and b/|d| (Inf or NaN per part), as c10::complex gives.
    const zero = p.equal(0);
    return fromParts(where(zero, a.div(where(zero, absC, 1)), re), where(zero, b.div(where(zero, absD, 1)), im));
  }

  neg(): ComplexTensor {
    return new ComplexTensor(this.real.neg(), this.imag.neg());
  }

  conj(): ComplexTensor {
    return new ComplexTensor(this.real, this.imag.neg());
  }

  /**
   * |z| as a real tensor of the parts' dtype: sqrt(x² + y²), rescaled by max(|x|, |y|) where the
   * sum of squares would overflow or underflow. Its gradient is grad * sgn(z) with sgn(0) = 0, as
   * PyTorch's abs backward, so |z| at 0 has gradient 0, not NaN.
   */
  abs(): Tensor {
    const { real: x, imag: y } = this;
    const r = noGrad(() => hypot(x, y));
    return customGradient(r, [x, y], (g, out) => {
      const zero = out.equal(0);
      const safe = where(zero, 1, out);
      return [where(zero, 0, g.mul(x.div(safe))), where(zero, 0, g.mul(y.div(safe)))];
    });
  }

  // ---- linear algebra and reductions -------------------------------------------------------

  /**
   * Matrix product (two 2-D operands), as four real products: (A + iB)(C + iD) = (AC - BD) + i(AD + BC).
   * Autocast leaves complex math alone, as PyTorch's autocast casts only floating-point tensors.
   */
  matmul(other: ComplexTensor | Tensor): ComplexTensor {
    return autocast(null, () => {
      if (!(other instanceof ComplexTensor)) return fromParts(this.real.matmul(other), this.imag.matmul(other));
      const [a, b, c, d] = [this.real, this.imag, other.real, other.imag];
      return fromParts(a.matmul(c).sub(b.matmul(d)), a.matmul(d).add(b.matmul(c)));
    });
  }

  sum(axes?: number | readonly number[], keepDims = false): ComplexTensor {
    return new ComplexTensor(this.real.sum(axes, keepDims), this.imag.sum(axes, keepDims));
  }

  mean(axes?: number | readonly number[], keepDims = false): ComplexTensor {
    return new ComplexTensor(this.real.mean(axes, keepDims), this.imag.mean(axes, keepDims));
  }

  // ---- shape -------------------------------------------------------------------------------

  reshape(shape: readonly number[]): ComplexTensor {
    return new ComplexTensor(this.real.reshape(shape), this.imag.reshape(shape));
  }

  /** Permutes axes without conjugating (torch's transpose / .T). */
  transpose(perm?: readonly number[]): ComplexTensor {
    return new ComplexTensor(this.real.transpose(perm), this.imag.transpose(perm));
  }
  get T(): ComplexTensor {
    return this.transpose();
  }
  /** Conjugate transpose (torch's .H / .mH for a matrix). */
  get H(): ComplexTensor {
    return this.transpose().conj();
  }

  expand(shape: readonly number[]): ComplexTensor {
    return new ComplexTensor(this.real.expand(shape), this.imag.expand(shape));
  }

  // ---- autograd and data -------------------------------------------------------------------

  /**
   * Backpropagates a complex gradient G, as torch's z.backward(G): the gradients are those of the
   * real loss sum(Re(conj(G) * z)), so that d/dz of z itself is G. A complex output has no implicit
   * gradient: call backward on a real loss (z.abs().sum(), ...) or pass G.
   */
  backward(gradient?: ComplexTensor): void {
    if (!gradient)
      throw new DTypeError(
        "backward",
        "a gradient can be created implicitly only for a real scalar output; pass a complex gradient or backpropagate a real loss",
      );
    if (!sameShape(gradient.shape, this.shape)) throw new ShapeError("backward", [this.shape, gradient.shape], "the gradient must have the output's shape");
    this.real.mul(gradient.real.detach()).sum().add(this.imag.mul(gradient.imag.detach()).sum()).backward();
  }

  /** Computes both parts as one program and returns their values. */
  async data(): Promise<ComplexValues> {
    await realize([this.real, this.imag]);
    return { real: (await this.real.data()) as Float32Array | Float64Array, imag: (await this.imag.data()) as Float32Array | Float64Array };
  }

  async item(): Promise<{ real: number; imag: number }> {
    if (this.size !== 1) throw new ShapeError("item", [this.shape], "only a tensor with one element can be read as a number");
    const { real, imag } = await this.data();
    return { real: real[0]!, imag: imag[0]! };
  }
}

/** Parts of any float dtypes and broadcastable shapes, promoted and broadcast to one dtype and shape. */
function fromParts(re: Tensor, im: Tensor): ComplexTensor {
  const dtype = promoteTypes(re.dtype, im.dtype);
  const shape = broadcastShapes("complex", re.shape, im.shape);
  const fit = (t: Tensor) => {
    const c = rawCast(t, dtype);
    return sameShape(c.shape, shape) ? c : c.expand(shape);
  };
  return new ComplexTensor(fit(re), fit(im));
}

/** sqrt(x² + y²) without spurious overflow or underflow (the value, no gradient). */
function hypot(x: Tensor, y: Tensor): Tensor {
  const sumSq = x.square().add(y.square());
  const plain = sumSq.sqrt();
  const m = x.abs().maximum(y.abs());
  const safe = where(m.equal(0), 1, m);
  const scaled = m.mul(x.div(safe).square().add(y.div(safe).square()).sqrt());
  const smallestNormal = x.dtype === "float64" ? 2 ** -1022 : 2 ** -126;
  const rescale = where(sumSq.less(smallestNormal), scaled, where(sumSq.equal(Infinity), scaled, plain));
  return where(m.equal(Infinity), Infinity, rescale);
}

// ---- factories ----------------------------------------------------------------------------

/**
 * torch.complex(real, imag): a complex tensor from real and imaginary parts of one dtype
 * (float32 or float64), broadcast together. Gradients flow to both parts.
 */
export function complex(real: Tensor, imag: Tensor): ComplexTensor {
  if (real.dtype !== imag.dtype) throw new DTypeError("complex", `real and imaginary parts must share a dtype, got ${real.dtype} and ${imag.dtype}`);
  complexDTypeOf(real.dtype, "complex(): the parts' dtype has no complex dtype.");
  return fromParts(real, imag);
}

/**
 * A complex tensor from the values of its real and imaginary parts. Without a dtype it takes the
 * active precision's: complex128 under 64-true, complex64 under 32-true; 16-bit precisions refuse.
 */
export function complexTensor(
  real: ArrayLike<number> | number,
  imag: ArrayLike<number> | number,
  shape?: readonly number[],
  dtype?: ComplexDType,
): ComplexTensor {
  const part = COMPLEX_PART_DTYPE[resolveComplexDType(dtype)];
  const [re, im] = [real, imag].map((v) => (typeof v === "number" ? [v] : v)) as [ArrayLike<number>, ArrayLike<number>];
  if (re.length !== im.length) throw new ShapeError("complexTensor", [[re.length], [im.length]], "real and imaginary values differ in count");
  const s = shape ?? (typeof real === "number" ? [] : [re.length]);
  return new ComplexTensor(tensor(re, s, part), tensor(im, s, part));
}

export function complexZeros(shape: readonly number[], dtype?: ComplexDType): ComplexTensor {
  const part = COMPLEX_PART_DTYPE[resolveComplexDType(dtype)];
  return new ComplexTensor(full(shape, 0, part), full(shape, 0, part));
}

/** A bool [2] mask, true at the real slot of a (real, imag) axis. */
const realSlot = (): Tensor => tensor([1, 0], [2], "bool");

/** torch.view_as_real: a real tensor with a trailing axis of 2 holding (real, imag). */
export function viewAsReal(z: ComplexTensor): Tensor {
  const s = [...z.shape, 1];
  return where(realSlot(), z.real.reshape(s), z.imag.reshape(s));
}

/** torch.view_as_complex: a real float32/float64 tensor whose last axis (of 2) holds (real, imag). */
export function viewAsComplex(t: Tensor): ComplexTensor {
  if (t.rank === 0 || t.shape[t.rank - 1] !== 2) throw new ShapeError("viewAsComplex", [t.shape], "the last axis must have size 2 (real, imag)");
  complexDTypeOf(t.dtype, "viewAsComplex(): the tensor's dtype has no complex dtype.");
  const slot = realSlot();
  return new ComplexTensor(where(slot, t, 0).sum(-1), where(slot, 0, t).sum(-1));
}
