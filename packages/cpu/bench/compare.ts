// Before/after for a change to @nbit/core: another build of core (NBIT_CORE_BEFORE: the path of its
// dist/index.js, e.g. from a worktree of main) and this one drive the same CpuBackend class in one
// process, alternating step by step with the hand-built graph; prints min / median / max per round
// of before / hand-built, after / hand-built and after / before, and checks both reach the same loss.
// npm run bench -w @nbit/cpu -- compare [64|128|256]
import * as after from "@nbit/core";
import { CpuAccelerator } from "../src/index.js";
import { batchesFor, env, handBuiltPath, interleave, MEDIUM, ratios, SMALL, spread, STANDARD, type MlpShape } from "./common.js";

const beforePath = process.env.NBIT_CORE_BEFORE;
if (!beforePath) {
  console.error("set NBIT_CORE_BEFORE to the dist/index.js of the @nbit/core build to compare against");
  process.exit(2);
}
const before = (await import(beforePath)) as typeof after;

function path(core: typeof after, shape: MlpShape) {
  const runtime = new core.Runtime(new CpuAccelerator({ threads: 1 }).createBackend());
  const batches = batchesFor(shape);
  const plugin = core.precisionPluginFor("32-true");
  const mlp = (dims: readonly number[]) => {
    const layers: after.Module[] = [];
    for (let k = 0; k + 1 < dims.length; k++) {
      layers.push(new core.Linear(dims[k]!, dims[k + 1]!));
      if (k + 2 < dims.length) layers.push(new core.ReLU());
    }
    return new core.Sequential(...layers);
  };
  const { model, optimizer } = core.withRuntime(runtime, () => {
    core.manualSeed(0);
    const model = plugin.initContext(() => mlp(shape.dims));
    return { model, optimizer: new core.SGD(model.parameters(), { lr: shape.lr }) };
  });
  let loss = 0;
  return {
    step: (i: number) =>
      core.withRuntime(runtime, async () => {
        const b = batches[i % batches.length]!;
        const x = plugin.convertInput(core.Tensor.fromHost(b.x, [shape.batch, shape.dims[0]!], "float32"));
        const out = plugin.forwardContext(() => core.crossEntropy(model.forward(x), core.Tensor.fromHost(b.y, [shape.batch], "int32")));
        loss = (await plugin.optimizerStep(optimizer, out)).loss;
      }),
    loss: () => loss,
  };
}

const [ROUNDS, STEPS, WARMUP] = [env("BENCH_ROUNDS", 7), env("BENCH_STEPS", 200), env("BENCH_WARMUP", 50)];
console.log(`32-true, SGD, 1 thread; ${ROUNDS} rounds of ${STEPS} steps per path after ${WARMUP} warm-up`);
for (const shape of [SMALL, MEDIUM, STANDARD]) {
  if (process.argv[3] && !shape.name.startsWith(process.argv[3])) continue;
  const paths = { hand: await handBuiltPath(shape, { threads: 1 }), before: path(before, shape), after: path(after, shape) };
  const r = await interleave(paths, { rounds: ROUNDS, steps: STEPS, warmup: WARMUP });
  if (paths.before.loss() !== paths.after.loss()) throw new Error(`the builds reach different losses: ${paths.before.loss()} and ${paths.after.loss()}`);
  console.log(
    `MLP ${shape.name}: before / hand-built ${spread(ratios(r.before, r.hand))}, after / hand-built ${spread(ratios(r.after, r.hand))}, after / before ${spread(ratios(r.after, r.before))}`,
  );
}
