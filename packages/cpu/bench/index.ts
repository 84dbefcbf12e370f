// Runs one CPU benchmark by name: npm run bench -w @nbit/cpu -- <name>
const BENCHES = {
  standard: "the standard MLP per precision against hand-built graphs, and memory per precision",
  models: "nbit / hand-built ONNX graph for three MLP sizes, in rounds",
  threads: "1 against 2 intra-op threads per model size (the default thread rule's evidence)",
  pytorch: "nbit 32-true and 64-true against PyTorch CPU on the standard MLP, alternated",
  rss: "resident memory over 5,000 steps with StepLR on an epoch interval",
  profile: "onnxruntime's per-node profile of nbit's step against the hand-built graph",
  replay: "JS cost per step with replay on and off (64-64-64-10, batch 32), interleaved",
  phases: "nbit's step split into phases (JS and native) against the hand-built step",
  dump: "writes the optimized ONNX graphs of nbit's step and the hand-built step (DUMP_DIR)",
  direct: "nbit's step with direct runs (the default) against session.run, and the hand-built step",
  alloc: "where a training step's JavaScript allocations come from, by package (sampling heap profiler)",
  binding: "onnxruntime-node's binding cost per graph input and per graph output",
  native: "onnxruntime's native run of nbit's step session against the hand-built one, binding called directly",
  malloc: "glibc malloc tuning on and off: fresh buffers, a 1 MiB run output, the standard MLP step",
  compare: "another build of @nbit/core (NBIT_CORE_BEFORE) against this one, interleaved",
} as const;
const name = process.argv[2] ?? "standard";
if (!(name in BENCHES)) {
  console.error(
    `unknown bench "${name}"; one of:\n${Object.entries(BENCHES)
      .map(([k, v]) => `  ${k.padEnd(9)} ${v}`)
      .join("\n")}`,
  );
  process.exit(2);
}
await import(`./${name}.ts`);
