import { Adam, crossEntropy, LightningModule, Linear, ReLU, Sequential, TensorDataset, type Batch, type Tensor } from "@nbit/core";

/** A 67-parameter classifier (Linear(4, 8), ReLU, Linear(8, 3)) with Adam: small enough to count bytes by hand in a backend's tests. */
export class TinyClassifier extends LightningModule {
  static readonly parameterCount = 67;
  readonly net = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 3));
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch): Tensor {
    return crossEntropy(this.forward(x!), y!);
  }
  configureOptimizers() {
    return new Adam(this.parameters(), { lr: 0.01 });
  }
}

/** Eight samples of four features and three classes for TinyClassifier. */
export const tinyClassification = (): TensorDataset =>
  new TensorDataset(
    { data: Array.from({ length: 32 }, (_, i) => Math.sin(i)), sampleShape: [4] },
    { data: [0, 1, 2, 0, 1, 2, 0, 1], sampleShape: [], dtype: "int32" },
  );
