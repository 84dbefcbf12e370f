import {
  accelerators,
  ALLOWED_PRECISION_INPUTS,
  formatSupportMatrix,
  InvalidPrecisionError,
  isPrecisionInput,
  NbitError,
  resolvePrecision,
  supportMatrix,
} from "@nbit/core";
import "@nbit/tpu";
import "@nbit/cpu";
import "@nbit/cuda";
import { Command, CommanderError, Option } from "commander";
import { writeFileSync } from "node:fs";
import pkg from "../package.json" with { type: "json" };
import { integerIn, positiveNumber } from "./args.js";
import { checkPlotPath, compareTable, PRECISION_RANK, precisionsToCompare } from "./compare.js";
import { lossCurvesSvg } from "./plot.js";
import { DEMOS, summary, type DemoDefaults } from "./demos.js";
import { trainMnist, type RunOptions, type RunResult } from "./run.js";

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

interface TrainingFlags {
  readonly maxEpochs: number;
  readonly maxSteps: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly seed: number;
  readonly limitBatches?: number;
  readonly progressBar: boolean;
  readonly captureSteps: boolean;
}

/** Exit code of a command line the parser refused (unknown option, bad number, ...), as POSIX utilities use. */
const USAGE_ERROR = 2;

function addTrainingOptions(command: Command, defaultEpochs: number): Command {
  return command
    .option("--max-epochs <n>", "stop after N epochs (-1: no limit, as in Lightning)", integerIn(-1), defaultEpochs)
    .option("--max-steps <n>", "stop after N optimizer steps (-1: no limit)", integerIn(-1), -1)
    .option("--batch-size <n>", "samples per batch", integerIn(1), 64)
    .option("--lr <x>", "Adam learning rate", positiveNumber, 2e-3)
    .option("--seed <n>", "seed for initialization and shuffling", integerIn(0, 2 ** 32 - 1), 0)
    .option("--limit-batches <n>", "train on the first N batches of each epoch", integerIn(1))
    .option("--no-progress-bar", "do not show the progress bar")
    .option("--no-capture-steps", "record every training step instead of replaying the captured one");
}

function trainingOptions(flags: TrainingFlags, io: CliIO): Omit<RunOptions, "accelerator" | "precision"> {
  return {
    // Printed right away: process warnings would wait for the event loop, which a training run keeps busy.
    warn: (message) => io.err(`warning: ${message}`),
    maxEpochs: flags.maxEpochs,
    maxSteps: flags.maxSteps,
    batchSize: flags.batchSize,
    lr: flags.lr,
    seed: flags.seed,
    progressBar: flags.progressBar,
    captureSteps: flags.captureSteps,
    ...(flags.limitBatches !== undefined ? { limitTrainBatches: flags.limitBatches } : {}),
  };
}

/** The exit code an action can set (a run that trained but missed its target). */
interface Outcome {
  code: number;
}

function program(io: CliIO, outcome: Outcome): Command {
  const acceleratorHelp = `auto (the best available), or one of: ${accelerators.names().join(", ")}`;
  const precisionOption = () =>
    new Option("--precision <p>", "canonical precision or Lightning legacy alias")
      .choices([...new Set(ALLOWED_PRECISION_INPUTS.map(String))])
      .default("32-true");
  const nbit = new Command("nbit")
    .description("Lightning-style precision training from the command line")
    .version(pkg.version, "-V, --version", "print the version")
    .helpCommand("help [command]", "show help for a command")
    .showSuggestionAfterError()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();

  const demoNames = Object.keys(DEMOS);
  addTrainingOptions(
    nbit
      .command("demo")
      .description("train a demo model with the default accelerator and precision, and test it")
      .addOption(new Option("--model <name>", "which demo to train").choices(demoNames).default("mlp")),
    DEMOS.mlp!.defaults.maxEpochs,
  ).action(async (flags: TrainingFlags & { model: string }, command: Command) => {
    const demo = DEMOS[flags.model]!;
    // Flags the user did not give take the demo's own defaults.
    const given = (key: keyof DemoDefaults) => command.getOptionValueSource(key) === "cli";
    const settings = Object.fromEntries((["maxEpochs", "batchSize", "lr"] as const).map((k) => [k, given(k) ? flags[k] : demo.defaults[k]]));
    io.out(`nbit demo: ${demo.description}`);
    const result = await demo.run(trainingOptions({ ...flags, ...settings }, io));
    io.out(result.summary);
    if (result.failure) {
      io.err(result.failure);
      outcome.code = 1;
    }
  });

  addTrainingOptions(
    nbit
      .command("fit")
      .description("train the MNIST classifier")
      .option("--accelerator <name>", acceleratorHelp, "auto")
      .addOption(precisionOption())
      .option("--log-dir <dir>", "write metrics.csv and checkpoints under DIR"),
    3,
  ).action(async (flags: TrainingFlags & { accelerator: string; precision: string; logDir?: string }) => {
    const accelerator = accelerators.resolve(flags.accelerator);
    const precision = flags.precision;
    if (!isPrecisionInput(precision)) throw new InvalidPrecisionError(precision, ALLOWED_PRECISION_INPUTS);
    resolvePrecision(accelerator, precision, null);
    const logDir = flags.logDir === undefined ? {} : { logDir: flags.logDir, checkpoint: true };
    io.out(summary(await trainMnist({ ...trainingOptions(flags, io), accelerator, precision, ...logDir })));
  });

  addTrainingOptions(
    nbit
      .command("compare")
      .description("train the same model under several precisions; print a table and plot the losses and their differences")
      .option("--accelerator <name>", acceleratorHelp, "auto")
      .option("--precisions <list>", "comma-separated precisions (default: every precision the accelerator supports)")
      .option("--plot <file.svg>", "where to write the loss curves", "nbit-compare.svg"),
    1,
  ).action(async (flags: TrainingFlags & { accelerator: string; precisions?: string; plot: string }) => {
    const accelerator = accelerators.resolve(flags.accelerator);
    const precisions = precisionsToCompare(accelerator, flags.precisions);
    const plot = checkPlotPath(flags.plot);
    const runs: RunResult[] = [];
    for (const precision of precisions) {
      io.err(`training with ${precision} on ${accelerator.name}...`);
      runs.push(await trainMnist({ ...trainingOptions(flags, io), accelerator, precision, progressBar: false }));
    }
    io.out(compareTable(accelerator.name, runs));
    const reference = [...runs].sort((a, b) => PRECISION_RANK.indexOf(a.precision) - PRECISION_RANK.indexOf(b.precision))[0]!;
    const series = runs.map((r) => ({ label: r.precision, values: r.losses }));
    writeFileSync(plot, lossCurvesSvg(series, { title: `MNIST training loss on ${accelerator.name}`, reference: reference.precision }));
    io.out(`loss curves written to ${flags.plot}`);
  });

  nbit
    .command("matrix")
    .description("print the precision support matrix of every registered accelerator")
    .action(() => io.out(formatSupportMatrix(supportMatrix(accelerators))));
  return nbit;
}

/** Runs the nbit command line; resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIO = { out: console.log, err: console.error }): Promise<number> {
  const outcome: Outcome = { code: 0 };
  try {
    await program(io, outcome).parseAsync([...argv], { from: "user" });
    return outcome.code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and --version end here too, with exit code 0.
      return e.exitCode === 0 ? 0 : USAGE_ERROR;
    }
    if (e instanceof NbitError) {
      io.err(e.message);
      return 1;
    }
    throw e;
  }
}
