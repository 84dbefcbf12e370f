import { executeInstruction, ReferenceBackend, type CompiledProgram, type Program, type TypedBuffer } from "../src/index.js";

/** Reference kernels behind a graph interface, counting compiled, run and released programs. */
export class ReleasingGraphBackend extends ReferenceBackend {
  override readonly capabilities = { ...new ReferenceBackend().capabilities, execution: "graph" as const };
  compiled: Program[] = [];
  released: Program[] = [];
  runs = 0;
  compile(program: Program): CompiledProgram {
    this.compiled.push(program);
    return {
      run: async (inputs) => {
        this.runs++;
        const values = [...(inputs as TypedBuffer[])];
        const infos = [...program.inputs, ...program.instructions];
        for (const ins of program.instructions)
          values.push(
            executeInstruction(
              ins,
              ins.inputs.map((i) => values[i]!),
              ins.inputs.map((i) => infos[i]!),
            ),
          );
        return program.outputs.map((o) => values[o]!);
      },
      dispose: () => void this.released.push(program),
    };
  }
}
