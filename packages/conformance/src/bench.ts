import {
  crossEntropy,
  Generator,
  Linear,
  manualSeed,
  precisionPluginFor,
  ReLU,
  Runtime,
  Sequential,
  SGD,
  tensor,
  type Backend,
  type Module,
  type Precision,
} from "@nbit/core";

// Free of vitest, so a backend's benchmark script can run it (`@nbit/conformance/bench`).

/** Linear layers of widths `dims` (input first) with a ReLU between each two. */
export function mlp(dims: readonly number[]): Module {
  const layers: Module[] = [];
  for (let k = 0; k + 1 < dims.length; k++) {
    layers.push(new Linear(dims[k]!, dims[k + 1]!));
    if (k + 2 < dims.length) layers.push(new ReLU());
  }
  return new Sequential(...layers);
}

/** The standard MLP benchmark: layer widths, batch size and SGD learning rate. */
export const STANDARD_MLP = { dims: [256, 512, 512, 10], batch: 128, lr: 0.05 } as const;

/** One precision's figures from `standardMlpRates`. */
export interface StandardMlpRate<B extends Backend> {
  readonly precision: Precision;
  readonly stepsPerSecond: number;
  readonly parameterBytes: number;
  /** The backend the steps ran on, for the caller to describe. */
  readonly backend: B;
}

/**
 * Steps per second of the standard MLP (256-512-512-10, ReLU, cross-entropy, SGD lr 0.05, batch
 * 128, synthetic data) for each precision `accelerator` supports, every step recorded, each
 * precision on a backend of its own: `steps` timed steps after `warmup`.
 */
export async function standardMlpRates<B extends Backend>(
  accelerator: { readonly supportedPrecisions: readonly Precision[]; createBackend(): B },
  { steps = 10, warmup = 2 }: { steps?: number; warmup?: number } = {},
): Promise<StandardMlpRate<B>[]> {
  const { dims, batch, lr } = STANDARD_MLP;
  const [inputs, classes] = [dims[0], dims[3]];
  const g = new Generator(0);
  const x = new Float32Array(batch * inputs).map(() => g.normal());
  const y = new Int32Array(batch).map(() => g.int(classes));
  const rates: StandardMlpRate<B>[] = [];
  for (const precision of accelerator.supportedPrecisions) {
    const backend = accelerator.createBackend();
    await new Runtime(backend).run(async () => {
      manualSeed(0);
      const plugin = precisionPluginFor(precision);
      const model = plugin.initContext(() => mlp(dims));
      const optimizer = new SGD(model.parameters(), { lr });
      const step = () =>
        plugin.optimizerStep(
          optimizer,
          plugin.forwardContext(() => crossEntropy(model.forward(plugin.convertInput(tensor(x, [batch, inputs]))), tensor(y, [batch], "int32"))),
        );
      for (let i = 0; i < warmup; i++) await step();
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) await step();
      rates.push({ precision, stepsPerSecond: steps / ((performance.now() - t0) / 1000), parameterBytes: model.parameterBytes(), backend });
    });
  }
  return rates;
}
