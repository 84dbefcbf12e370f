import { accelerators, formatSupportMatrix, NbitError, resolvePrecision, supportMatrix } from "@nbit/core";
import "@nbit/tpu";
import "@nbit/cpu";
import "@nbit/cuda";
import { writeFileSync } from "node:fs";
import { numberOption, parseArgs, stringOption } from "./args.js";
import { lossCurvesSvg } from "./plot.js";
import { trainMnist, type RunResult } from "./run.js";

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const USAGE = `Usage: nbit <command> [options]

Commands:
  demo                       train the MNIST classifier (default accelerator and precision) and test it
  fit [options]              train the MNIST classifier
      --accelerator NAME     auto (default), cpu, tpu, cuda, ...
      --precision P          32-true (default), bf16-mixed, 16-mixed, 64-true, bf16-true, 16-true, or a legacy alias
      --max-epochs N         (default 3)   --batch-size N (default 64)   --lr X (default 0.002)   --seed N
      --log-dir DIR          write metrics.csv and checkpoints under DIR
      --limit-batches N      train on the first N batches of each epoch
  compare [options]          train the same model under several precisions; print a table and plot the losses
      --precisions a,b,...   (default: every precision the accelerator supports)
      --accelerator NAME     --max-epochs N (default 1)   --plot FILE.svg (default nbit-compare.svg)
  matrix                     print the precision support matrix of every registered accelerator
  help                       show this message`;

function common(options: Record<string, string | true>, epochs: number) {
  return {
    maxEpochs: numberOption(options, "max-epochs", epochs),
    batchSize: numberOption(options, "batch-size", 64),
    lr: numberOption(options, "lr", 2e-3),
    seed: numberOption(options, "seed", 0),
    ...(options["limit-batches"] !== undefined ? { limitTrainBatches: numberOption(options, "limit-batches", 0) } : {}),
  };
}

function summary(r: RunResult): string {
  return `${r.accelerator} ${r.precision}: test accuracy ${(r.testAccuracy * 100).toFixed(2)}%, test loss ${r.testLoss.toFixed(4)}, ${r.seconds.toFixed(1)} s, parameters ${r.parameterBytes} bytes`;
}

export async function main(argv: readonly string[], io: CliIO = { out: console.log, err: console.error }): Promise<number> {
  const { command, options } = parseArgs(argv);
  try {
    switch (command) {
      case "matrix":
        io.out(formatSupportMatrix(supportMatrix(accelerators)));
        return 0;
      case "demo": {
        io.out("nbit demo: a 784-128-10 MLP on the real MNIST digits shipped in the `mnist` package (8,500 train / 1,500 test)");
        const result = await trainMnist({ ...common(options, 10), progressBar: true });
        io.out(summary(result));
        if (result.testAccuracy < 0.9) {
          io.err(`Test accuracy ${(result.testAccuracy * 100).toFixed(2)}% is below 90%.`);
          return 1;
        }
        return 0;
      }
      case "fit": {
        const accelerator = stringOption(options, "accelerator", "auto");
        const precision = stringOption(options, "precision", "32-true");
        const logDir = options["log-dir"] === undefined ? {} : { logDir: stringOption(options, "log-dir", ""), checkpoint: true };
        const result = await trainMnist({ ...common(options, 3), accelerator, precision, progressBar: options["no-progress-bar"] === undefined, ...logDir });
        io.out(summary(result));
        return 0;
      }
      case "compare": {
        const accelerator = accelerators.resolve(stringOption(options, "accelerator", "auto"));
        const requested = options.precisions === undefined ? accelerator.supportedPrecisions : stringOption(options, "precisions", "").split(",").map((p) => p.trim());
        const runs: RunResult[] = [];
        for (const p of requested) {
          const precision = resolvePrecision(accelerator, p, null).precision;
          io.err(`training with ${precision} on ${accelerator.name}...`);
          runs.push(await trainMnist({ ...common(options, 1), accelerator, precision, progressBar: false }));
        }
        const header = ["precision", "final loss", "test acc", "time (s)", "param bytes", "optim bytes", "skipped"];
        const rows = runs.map((r) => [r.precision, r.finalLoss.toFixed(4), `${(r.testAccuracy * 100).toFixed(2)}%`, r.seconds.toFixed(1), String(r.parameterBytes), String(r.optimizerBytes), String(r.skippedSteps)]);
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
        io.out([`accelerator: ${accelerator.name}`, line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n"));
        const plot = stringOption(options, "plot", "nbit-compare.svg");
        writeFileSync(plot, lossCurvesSvg(runs.map((r) => ({ label: r.precision, values: r.losses })), `MNIST training loss on ${accelerator.name}`));
        io.out(`loss curves written to ${plot}`);
        return 0;
      }
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        io.err(`Unknown command "${command}".\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof NbitError) {
      io.err(e.message);
      return 1;
    }
    throw e;
  }
}
