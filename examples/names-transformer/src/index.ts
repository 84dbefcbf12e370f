import { accelerators, type Accelerator, type Precision } from "@nbit/core";
import { namesSummary, trainNames, type NamesRunResult } from "@nbit/cli";
import { CudaAccelerator } from "@nbit/cuda";

/**
 * Trains the names transformer on each backend in the precision the issue asks of it, and checks
 * that every run beats the bigram baseline. Steps differ: the tpu backend runs core's host kernels
 * and, without a GPU, cuda runs its tfjs code on tfjs's JavaScript CPU kernels, both far slower
 * than onnxruntime on cpu, so those runs are kept short enough for CI.
 */
interface Plan {
  readonly accelerator: () => Accelerator;
  readonly precision: Precision;
  readonly steps: number;
  readonly batchSize: number;
  readonly note: string;
}

const PLANS: Record<string, Plan> = {
  cpu: { accelerator: () => accelerators.resolve("cpu"), precision: "bf16-mixed", steps: 300, batchSize: 64, note: "onnxruntime-node" },
  tpu: { accelerator: () => accelerators.resolve("tpu"), precision: "bf16-mixed", steps: 50, batchSize: 32, note: "core's host kernels with MXU rounding" },
  cuda: {
    accelerator: () => (accelerators.available().includes("cuda") ? accelerators.resolve("cuda") : new CudaAccelerator("tfjs-cpu")),
    precision: "16-mixed",
    steps: 50,
    batchSize: 32,
    note: "",
  },
};

async function main(args: readonly string[]): Promise<number> {
  const wanted = args;
  const names = wanted.length ? wanted : Object.keys(PLANS);
  const unknown = names.filter((n) => !Object.hasOwn(PLANS, n));
  if (unknown.length) {
    console.error(`unknown backend(s) ${unknown.join(", ")}; choose from ${Object.keys(PLANS).join(", ")}`);
    return 2;
  }

  const results: NamesRunResult[] = [];
  for (const name of names) {
    const plan = PLANS[name]!;
    const accelerator = plan.accelerator();
    const note = name === "cuda" ? (accelerators.available().includes("cuda") ? "a CUDA GPU" : "no GPU here: tfjs's JavaScript CPU kernels") : plan.note;
    console.log(`\n== ${name} (${note}), ${plan.precision}, ${plan.steps} steps of ${plan.batchSize} names`);
    const result = await trainNames({
      accelerator,
      precision: plan.precision,
      maxSteps: plan.steps,
      batchSize: plan.batchSize,
      seed: 0,
      progressBar: false,
      captureSteps: true,
    });
    console.log(namesSummary(result));
    results.push(result);
  }
  const losing = results.filter((r) => !(r.valLoss < r.bigramLoss));
  for (const r of losing) console.error(`${r.accelerator} ${r.precision}: ${r.valLoss.toFixed(4)} does not beat the bigram's ${r.bigramLoss.toFixed(4)}`);
  return losing.length ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
