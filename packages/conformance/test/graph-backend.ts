import {
  castHost,
  executeHost,
  FLOAT_FORMATS,
  hostToFloat32,
  isHalfDType,
  KernelRegistry,
  numbersToHost,
  referenceAccelerator,
  referenceKernels,
  ROUNDED_FLOAT_DTYPES,
  type Accelerator,
  type Backend,
  type BackendCapabilities,
  type DType,
  type HostArray,
  type HostKernel,
  type Program,
  type TypedBuffer,
} from "@nbit/core";

const physical = (d: DType): DType => (isHalfDType(d) ? "float32" : d);
const KERNELS = new KernelRegistry<HostKernel>("graph-reference", referenceKernels());

/**
 * A graph-executing backend that stores float16/bfloat16 as float32 (as the ONNX Runtime CPU
 * backend does): it exercises core's program capture, program cache and float32-storage lowering.
 */
export class GraphReferenceBackend implements Backend {
  readonly name = "graph-reference";
  readonly capabilities: BackendCapabilities = KERNELS.capabilities("graph", {
    float64: "native",
    float32: "native",
    ...Object.fromEntries(ROUNDED_FLOAT_DTYPES.map((d) => [d, "float32"])),
    int32: "native",
    bool: "native",
    uint8: "native",
    int8: "native",
  });
  compiled = 0;

  upload(data: HostArray, dtype: DType): TypedBuffer {
    return { data: isHalfDType(dtype) ? hostToFloat32(data, dtype) : data.slice() };
  }

  download(buffer: object, dtype: DType): HostArray {
    const data = (buffer as TypedBuffer).data;
    return isHalfDType(dtype) ? numbersToHost(data as Float32Array, dtype) : data.slice();
  }

  compile(program: Program) {
    this.compiled++;
    const infos = [...program.inputs, ...program.instructions].map((v) => ({ ...v, dtype: physical(v.dtype) }));
    return {
      run: async (inputs: readonly object[]) => {
        const values: TypedBuffer[] = [...(inputs as TypedBuffer[])];
        for (const ins of program.instructions) {
          const args = ins.inputs.map((i) => values[i]!);
          const argInfos = ins.inputs.map((i) => infos[i]!);
          if (ins.op === "cast" && isHalfDType(ins.dtype)) {
            const wide = castHost(args[0]!.data, argInfos[0]!.dtype, "float32") as Float32Array;
            values.push({ data: FLOAT_FORMATS[ins.dtype].roundInPlace(wide) });
          } else values.push(executeHost(KERNELS, { ...ins, dtype: physical(ins.dtype) }, args, argInfos));
        }
        return program.outputs.map((o) => values[o]!);
      },
    };
  }
}

export const graphReferenceAccelerator = (backend = new GraphReferenceBackend()): Accelerator =>
  referenceAccelerator({ name: "graph-reference", backend: () => backend });
