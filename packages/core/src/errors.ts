/** Base class of every error thrown by nbit; `code` is stable and machine-readable. */
export class NbitError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

const list = (values: readonly unknown[]): string => values.map((v) => JSON.stringify(v)).join(", ");

export class InvalidPrecisionError extends NbitError {
  constructor(
    readonly received: unknown,
    readonly allowed: readonly (string | number)[],
  ) {
    super("INVALID_PRECISION", `Precision ${JSON.stringify(received)} is not supported. Expected one of: ${list(allowed)}.`);
  }
}

export class UnsupportedPrecisionError extends NbitError {
  constructor(
    readonly accelerator: string,
    readonly requested: string,
    readonly supported: readonly string[],
    hint = "",
  ) {
    super(
      "UNSUPPORTED_PRECISION",
      `Accelerator "${accelerator}" does not support precision "${requested}". It supports: ${list(supported)}.${hint ? ` ${hint}` : ""}`,
    );
  }
}

export class UnknownAcceleratorError extends NbitError {
  constructor(
    readonly requested: string,
    readonly registered: readonly string[],
    /** Why it may be missing, e.g. a second copy of @nbit/core took the registration. */
    hint = "",
  ) {
    super("UNKNOWN_ACCELERATOR", `Unknown accelerator "${requested}". Registered accelerators: ${registered.length ? list(registered) : "(none)"}.${hint}`);
  }
}

export class UnknownOptionError extends NbitError {
  constructor(
    /** What the options were for, e.g. "Trainer". */
    readonly owner: string,
    readonly option: string,
    readonly suggestion: string | undefined,
    readonly known: readonly string[],
  ) {
    super(
      "UNKNOWN_OPTION",
      `Unknown ${owner} option ${JSON.stringify(option)}.${suggestion ? ` Did you mean ${JSON.stringify(suggestion)}?` : ""} ${owner} options are: ${known.join(", ")}.`,
    );
  }
}

export class DuplicateAcceleratorError extends NbitError {
  constructor(readonly accelerator: string) {
    super("DUPLICATE_ACCELERATOR", `An accelerator named "${accelerator}" is already registered. Pass { override: true } to replace it.`);
  }
}

export interface AcceleratorAttempt {
  readonly name: string;
  readonly reason: string;
}

export class AcceleratorUnavailableError extends NbitError {
  constructor(
    readonly requested: string,
    readonly attempts: readonly AcceleratorAttempt[],
    readonly available: readonly string[],
  ) {
    const tried = attempts.map((a) => `  - ${a.name}: ${a.reason}`).join("\n");
    super(
      "ACCELERATOR_UNAVAILABLE",
      `Accelerator "${requested}" is not available:\n${tried}\nAvailable accelerators: ${available.length ? list(available) : "(none)"}.`,
    );
  }
}

export class UnsupportedOpError extends NbitError {
  constructor(
    readonly backend: string,
    readonly op: string,
    readonly dtype: string,
    readonly supportedDTypes: readonly string[],
  ) {
    super(
      "UNSUPPORTED_OP",
      `Backend "${backend}" cannot run op "${op}" in ${dtype}. It runs "${op}" in: ${supportedDTypes.length ? list(supportedDTypes) : "(no dtype)"}.`,
    );
  }
}

export class ShapeError extends NbitError {
  constructor(
    readonly op: string,
    readonly shapes: readonly (readonly number[])[],
    detail: string,
  ) {
    super("SHAPE_MISMATCH", `${op}: ${detail} (got shapes ${shapes.map((s) => `[${s.join(", ")}]`).join(" and ")})`);
  }
}

export class DTypeError extends NbitError {
  constructor(op: string, detail: string) {
    super("DTYPE_MISMATCH", `${op}: ${detail}`);
  }
}

/** One operation used tensors that live on two different runtimes (two Trainers, or two backends). */
export class RuntimeMismatchError extends NbitError {
  constructor(
    readonly expectedBackend: string,
    readonly receivedBackend: string,
    readonly shape: readonly number[],
  ) {
    super(
      "RUNTIME_MISMATCH",
      `An operation running on backend "${expectedBackend}" received a tensor of shape [${shape.join(", ")}] that lives on another runtime (backend "${receivedBackend}"). ` +
        "Tensors belong to the runtime (Trainer) that placed them; download the tensor (toHost) and build a new one to move it.",
    );
  }
}
