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
import { availableParallelism } from "node:os";
import type * as ort from "onnxruntime-node";
import { CPU_KERNELS } from "./kernels.js";
import { lowerProgram } from "./lower.js";
import { loadNativeBinding, type NativeBinding } from "./native.js";
import { MALLOC_TUNING_OUTPUT_BYTES, tuneMalloc, type MallocTuning } from "./malloc-tuning.js";
import { encodeModel } from "./onnx-proto.js";
import { largestOutputBytes, PACKED_OUTPUT_BYTES, packOutputs, type PackedOutput } from "./pack.js";

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
  /**
   * Intra-op threads per session. Default: chosen per program by its work per run (see
   * `defaultThreads`): 1 thread below `SMALL_PROGRAM_WORK`, otherwise every core.
   */
  readonly threads?: number;
  /**
   * Let idle intra-op threads spin for a while after a run (onnxruntime's own default). Off by
   * default: between nbit's runs the JS side works, and threads spinning meanwhile take the cores
   * from it and from every other session in the process.
   */
  readonly allowSpinning?: boolean;
  /**
   * Lower core's decomposed linear layers and log-softmax to onnxruntime's Gemm and LogSoftmax
   * (default true). Off, every primitive becomes its own ONNX node.
   */
  readonly fuse?: boolean;
  /**
   * Call onnxruntime-node's native binding directly (default true where this onnxruntime-node has
   * the binding nbit knows): the same native run as `session.run`, without the event-loop turn
   * its wrapper takes before every run (13-18 us of the small MLP's step, bench/direct.ts). Core's
   * Runtime lets the event loop turn once `EVENT_LOOP_TURN_MS` (5 ms) passed without a turn.
   */
  readonly directRun?: boolean;
  /**
   * Outputs of one type that total at most this many bytes leave the session as one output, each
   * program output then a view of it (default `PACKED_OUTPUT_BYTES`, 64 KiB; 0 packs none).
   */
  readonly packedOutputBytes?: number;
  /**
   * Keep freed heap memory in the process rather than return it to the kernel after every
   * garbage collection (default true; see `tuneMalloc`): glibc's trim and mmap thresholds, set once
   * per process when the backend first compiles a program with an output larger than
   * `MALLOC_TUNING_OUTPUT_BYTES` (128 KiB). NBIT_MALLOC_TUNING=0 turns it off too.
   */
  readonly tuneMalloc?: boolean;
}

/**
 * Outputs at most this many elements long are copied out of a packed output rather than viewed in
 * it: a loss kept for logging then holds its own few bytes, not the whole packed buffer.
 */
const COPIED_OUTPUT_ELEMENTS = 256;

const TUNING_OFF: MallocTuning = { applied: false, reason: "this backend's tuneMalloc option is false" };
const TUNING_NOT_NEEDED: MallocTuning = {
  applied: false,
  reason: `no program compiled so far has an output larger than ${MALLOC_TUNING_OUTPUT_BYTES / 1024} KiB`,
};

/** The binding's run options: none, the same object every run. */
const RUN_OPTIONS = {};

/**
 * Below this much work per run (float32-equivalent floating-point operations, see programWork),
 * one intra-op thread is faster than several: handing work to a second thread costs more than it saves (measured with
 * bench/threads.ts; the figures are in the README).
 */
export const SMALL_PROGRAM_WORK = 50e6;

/**
 * The work of one run of `program` in float32-equivalent floating-point operations: matrix
 * products and convolutions at 2 per multiply-add, other ops at 1 per element, and float64 ops
 * twice (onnxruntime's float64 kernels run at about half the float32 rate).
 */
export function programWork(program: Program): number {
  const infos = [...program.inputs, ...program.instructions];
  let work = 0;
  for (const ins of program.instructions) {
    const size = ins.shape.reduce((a, b) => a * b, 1);
    let flops = size;
    if (ins.op === "matmul") flops = 2 * size * infos[ins.inputs[0]!]!.shape.at(-1)!;
    else if (ins.op === "conv2d") {
      const w = infos[ins.inputs[1]!]!.shape;
      flops = 2 * size * w[1]! * w[2]! * w[3]!;
    } else if (ins.op === "convTranspose2d") {
      const [x, w] = [infos[ins.inputs[0]!]!.shape, infos[ins.inputs[1]!]!.shape];
      flops = 2 * x.reduce((a, b) => a * b, 1) * w[1]! * w[2]! * w[3]!;
    }
    work += ins.dtype === "float64" ? 2 * flops : flops;
  }
  return work;
}

/** The intra-op thread count for a program of `work` (see programWork) per run when none is configured. */
export function defaultThreads(work: number, cores = availableParallelism()): number {
  return work < SMALL_PROGRAM_WORK ? 1 : Math.max(1, cores);
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
  private tuning: MallocTuning;

  /** onnxruntime-node's native binding, when this version has the one nbit knows (see native.ts). */
  private readonly native: NativeBinding | undefined;

  constructor(
    private readonly ort: Ort,
    private readonly options: CpuBackendOptions = {},
  ) {
    this.native = options.directRun === false ? undefined : loadNativeBinding();
    this.tuning = options.tuneMalloc === false ? TUNING_OFF : TUNING_NOT_NEEDED;
  }

  /** The process's malloc tuning as this backend made it, or why it did not (see `tuneMalloc`). */
  get mallocTuning(): MallocTuning {
    return this.tuning;
  }

  upload(data: HostArray, dtype: DType, shape: Shape): ort.Tensor {
    if (isHalfDType(dtype)) return new this.ort.Tensor("float32", hostToFloat32(data, dtype), [...shape]);
    return new this.ort.Tensor(ORT_TYPE[dtype]!, data as never, [...shape]);
  }

  download(buffer: object, dtype: DType): HostArray {
    const data = (buffer as ort.Tensor).data as HostArray;
    if (isHalfDType(dtype)) return numbersToHost(data as Float32Array, dtype);
    return data.slice();
  }

  /** The onnxruntime session options a program is compiled with. */
  sessionOptions(program: Program): ort.InferenceSession.SessionOptions {
    const spinning = this.options.allowSpinning ? "1" : "0";
    return {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      executionMode: "sequential",
      intraOpNumThreads: this.options.threads ?? defaultThreads(programWork(program)),
      interOpNumThreads: 1,
      logSeverityLevel: 3,
      extra: {
        session: { intra_op: { allow_spinning: spinning }, inter_op: { allow_spinning: spinning } },
        ...(hasFloat64Constant(program) ? KEEP_FLOAT64_CONSTANTS : {}),
      },
      ...(process.env.NBIT_DUMP ? { optimizedModelFilePath: process.env.NBIT_DUMP } : {}),
      ...(process.env.NBIT_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.NBIT_PROFILE } : {}),
    };
  }

  async compile(program: Program): Promise<CompiledProgram> {
    const lowered = lowerProgram(program, CPU_KERNELS, { fuse: this.options.fuse ?? true });
    const { graph, outputs } = packOutputs(lowered, this.options.packedOutputBytes ?? PACKED_OUTPUT_BYTES);
    if (this.tuning === TUNING_NOT_NEEDED && largestOutputBytes(graph) > MALLOC_TUNING_OUTPUT_BYTES) this.tuning = tuneMalloc();
    const model = encodeModel(graph);
    const inputNames = program.inputs.map((_, i) => `v${i}`);
    const feedsOf = (inputs: readonly object[]) => {
      const feeds: Record<string, ort.Tensor> = {};
      for (let i = 0; i < inputNames.length; i++) feeds[inputNames[i]!] = inputs[i] as ort.Tensor;
      return feeds;
    };
    // Each output's place and shape, built once: a run only slices and wraps.
    const places = outputs.map((o) => ("offset" in o ? { ...o, dims: [...o.dims] } : o));
    const unpacker = (wrap: WrapPart) => (results: Record<string, ort.Tensor>) => {
      const buffers = new Array<ort.Tensor | BindingTensor>(places.length);
      for (let k = 0; k < places.length; k++) buffers[k] = unpacked(results[places[k]!.output]!, places[k]!, wrap);
      return buffers;
    };
    if (this.native) {
      const unpack = unpacker((type, data, dims) => new BindingTensor(type, data, dims));
      const session = this.native.createSession(model, this.sessionOptions(program));
      this.sessionsCreated++;
      const fetches = Object.fromEntries(graph.outputs.map((o) => [o.name, null]));
      // The outputs at once when the binding returns them at once: no promise per run.
      const runNow = (inputs: readonly object[]): object[] | Promise<object[]> => {
        const results = session.run(feedsOf(inputs), fetches, RUN_OPTIONS);
        return results instanceof Promise ? results.then(unpack) : unpack(results);
      };
      return {
        run: runNow,
        dispose: () => session.dispose(),
      };
    }
    const unpack = unpacker((type, data, dims) => new this.ort.Tensor(type, data as never, dims));
    const session = await this.ort.InferenceSession.create(model, this.sessionOptions(program));
    this.sessionsCreated++;
    return {
      run: async (inputs) => unpack(await session.run(feedsOf(inputs))),
      dispose: () => void session.release(),
    };
  }
}

/** Makes the tensor of one part of a packed output. */
type WrapPart = (type: ort.Tensor.Type, data: Exclude<HostArray, number[]>, dims: number[]) => ort.Tensor | BindingTensor;

/**
 * A tensor as onnxruntime-node's native binding reads an input (location, type, dims, data): the
 * direct path's parts of packed outputs, made without ort.Tensor's constructor and its checks
 * (the small MLP's step has 7 parts). Only ever fed to the binding, never to the public session.run.
 */
class BindingTensor {
  readonly location = "cpu";
  constructor(
    readonly type: ort.Tensor.Type,
    readonly data: Exclude<HostArray, number[]>,
    readonly dims: readonly number[],
  ) {}
}

/** One program output from the session's outputs: the output itself, or its part of a packed one. */
function unpacked(result: ort.Tensor, place: PackedOutput, wrap: WrapPart): ort.Tensor | BindingTensor {
  if (!("offset" in place)) return result;
  const data = result.data as Exclude<HostArray, number[]>;
  const end = place.offset + place.length;
  const part = place.length <= COPIED_OUTPUT_ELEMENTS ? data.slice(place.offset, end) : data.subarray(place.offset, end);
  // place.dims is this output's own array (see compile), never changed: shared by its tensors.
  return wrap(result.type, part, place.dims as number[]);
}
