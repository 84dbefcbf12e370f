import { crossEntropy, Generator, Linear, manualSeed, precisionPluginFor, ReLU, SGD, Sequential, tensor, type AutocastPolicy } from "@nbit/core";

// Free of vitest, so benchmark scripts can run the kit's agreement model outside a test run
// (`@nbit/conformance/agreement`).

/**
 * Cross-backend agreement of a bf16-mixed MLP (16-32-32-4, ReLU, cross-entropy, SGD with momentum
 * 0.9, lr 0.05) on 128 samples of overlapping blobs: the loss of each of `steps` steps. Every op rounds the same
 * way on every backend; only the summation order of matmuls and reductions differs, so the losses
 * drift apart slowly, not at once.
 */
export async function bf16MixedLosses(autocastPolicy: AutocastPolicy, steps: number): Promise<number[]> {
  manualSeed(3);
  const plugin = precisionPluginFor("bf16-mixed", autocastPolicy);
  const model = plugin.initContext(() => new Sequential(new Linear(16, 32), new ReLU(), new Linear(32, 32), new ReLU(), new Linear(32, 4)));
  const optimizer = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  // Overlapping clusters, so the loss stays well above 0 and relative differences mean something.
  const { x, y } = blobs(128, 16, 4, new Generator(5), 0.3, 1);
  const input = tensor(x, [128, 16]);
  const labels = tensor(y, [128], "int32");
  const losses: number[] = [];
  for (let s = 0; s < steps; s++)
    losses.push(
      (
        await plugin.optimizerStep(
          optimizer,
          plugin.forwardContext(() => crossEntropy(model.forward(input), labels)),
        )
      ).loss,
    );
  return losses;
}

/** Bounds of the kit's agreement test, relative to the reference backend's losses. */
export const AGREEMENT_BOUNDS = { firstLoss: 1e-5, everyLoss: 2e-2, steps: 50 } as const;

/** Gaussian blobs: `classes` clusters in `features` dimensions. */
export function blobs(n: number, features: number, classes: number, g: Generator, spread = 2, noise = 0.7): { x: Float32Array; y: Int32Array } {
  const centers = Array.from({ length: classes }, () => Array.from({ length: features }, () => g.normal() * spread));
  const x = new Float32Array(n * features);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let f = 0; f < features; f++) x[i * features + f] = centers[y[i]!]![f]! + g.normal() * noise;
  }
  return { x, y };
}
