// Trains the demo CNN on the `mnist` package's digits on the cpu accelerator, in 32-true and
// bf16-mixed (or the precisions given as arguments), and prints test accuracy, wall time and the
// process CPU time of each run. Run from the repository root after `npm run build`:
//
//   node examples/cnn-mnist/train.mjs [32-true] [bf16-mixed]
import { accelerators } from "@nbit/core";
import { DEMOS, trainMnist } from "@nbit/cli";

const precisions = process.argv.length > 2 ? process.argv.slice(2) : ["32-true", "bf16-mixed"];
const { maxEpochs, batchSize, lr } = DEMOS.cnn.defaults;
let failed = false;
for (const precision of precisions) {
  const cpu = process.cpuUsage();
  const result = await trainMnist({
    accelerator: accelerators.resolve("cpu"),
    precision,
    model: "cnn",
    shiftedCopies: 1,
    maxEpochs,
    batchSize,
    lr,
    seed: 0,
    progressBar: false,
    captureSteps: true,
  });
  const used = process.cpuUsage(cpu);
  const accuracy = result.testAccuracy * 100;
  console.log(
    `cnn ${precision}: test accuracy ${accuracy.toFixed(2)}%, training ${result.seconds.toFixed(1)} s wall (${result.replayedSteps} steps replayed), ${((used.user + used.system) / 1e6).toFixed(1)} s CPU (training and testing)`,
  );
  if (accuracy < 98) failed = true;
}
process.exit(failed ? 1 : 0);
