import {
  hostToFloat32,
  isHalfDType,
  numbersToHost,
  ROUNDED_FLOAT_DTYPES,
  type Backend,
  type BackendCapabilities,
  type CompiledProgram,
  type DType,
  type HostArray,
  type Program,
  type Shape,
} from "@nbit/core";
import type * as ort from "onnxruntime-node";
import { CPU_KERNELS } from "./kernels.js";
import { programToOnnx } from "./lower.js";

type Ort = typeof ort;

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float64: "float64",
  float32: "float32",
  int32: "int32",
  int8: "int8",
  uint8: "uint8",
  bool: "bool",
};

/**
 * What onnxruntime's CPU execution provider gives nbit: float32 and float64 kernels, graph
 * execution, and float16/bfloat16 held as float32 values that are always exactly representable
 * (its CPU EP has no bfloat16 arithmetic and its JS API has no bfloat16 tensor).
 */
export const CPU_CAPABILITIES: BackendCapabilities = CPU_KERNELS.capabilities("graph", {
  float64: "native",
  float32: "native",
  ...Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, "float32"])),
  int32: "native",
  bool: "native",
  uint8: "native",
  int8: "native",
});

export interface CpuBackendOptions {
  /** Intra-op threads per session (default: every core). */
  readonly threads?: number;
  /**
   * Let idle intra-op threads spin for a while after a run (onnxruntime's default). Turn it off
   * when several sessions take turns, or their spinning threads slow each other down.
   */
  readonly allowSpinning?: boolean;
}

/**
 * onnxruntime's MatMulScaleFusion folds a scalar constant multiplying a matmul into the fused
 * op's float32 alpha, rounding a float64 constant to float32; float64 programs keep it a constant.
 */
const KEEP_FLOAT64_CONSTANTS = { optimization: { disable_specified_optimizers: "MatMulScaleFusion" } };
const hasFloat64Constant = (program: Program) => program.instructions.some((ins) => ins.op === "const" && ins.dtype === "float64");

/** Runs each captured program (a whole training step) as one onnxruntime session. */
export class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly capabilities = CPU_CAPABILITIES;
  sessionsCreated = 0;

  constructor(
    private readonly ort: Ort,
    private readonly options: CpuBackendOptions = {},
  ) {}

  upload(data: HostArray, dtype: DType, shape: Shape): ort.Tensor {
    if (isHalfDType(dtype)) return new this.ort.Tensor("float32", hostToFloat32(data, dtype), [...shape]);
    return new this.ort.Tensor(ORT_TYPE[dtype]!, data as never, [...shape]);
  }

  download(buffer: object, dtype: DType): HostArray {
    const data = (buffer as ort.Tensor).data as HostArray;
    if (isHalfDType(dtype)) return numbersToHost(data as Float32Array, dtype);
    return data.slice();
  }

  async compile(program: Program): Promise<CompiledProgram> {
    const model = programToOnnx(program, CPU_KERNELS);
    const session = await this.ort.InferenceSession.create(model, {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      executionMode: "sequential",
      interOpNumThreads: 1,
      logSeverityLevel: 3,
      extra: {
        ...(this.options.allowSpinning === false ? { session: { intra_op: { allow_spinning: "0" } } } : {}),
        ...(hasFloat64Constant(program) ? KEEP_FLOAT64_CONSTANTS : {}),
      },
      ...(process.env.NBIT_DUMP ? { optimizedModelFilePath: process.env.NBIT_DUMP } : {}),
      ...(this.options.threads ? { intraOpNumThreads: this.options.threads } : {}),
    });
    this.sessionsCreated++;
    const inputNames = program.inputs.map((_, i) => `v${i}`);
    const outputNames = program.outputs.map((_, k) => `out${k}`);
    return {
      run: async (inputs) => {
        const feeds: Record<string, ort.Tensor> = {};
        inputNames.forEach((n, i) => (feeds[n] = inputs[i] as ort.Tensor));
        const results = await session.run(feeds);
        return outputNames.map((n) => results[n]!);
      },
      dispose: () => void session.release(),
    };
  }
}
