import {
  accuracyOf,
  Adam,
  BatchNorm2d,
  Conv2d,
  CosineAnnealingLR,
  crossEntropy,
  Flatten,
  LightningModule,
  Linear,
  MaxPool2d,
  ReLU,
  Sequential,
  type Batch,
  type OptimizerConfig,
  type Tensor,
} from "@nbit/core";

/** Steps shared by the MNIST classifiers: cross-entropy, accuracy, Adam. */
abstract class DigitClassifier extends LightningModule {
  abstract readonly net: Sequential;

  constructor(readonly lr: number) {
    super();
  }

  /** Flat 784-pixel rows in, 10 logits out. */
  abstract override forward(x: Tensor): Tensor;

  trainingStep([x, y]: Batch): Tensor {
    const loss = crossEntropy(this.forward(x!), y!);
    this.log("train_loss", loss);
    return loss;
  }

  override validationStep([x, y]: Batch): void {
    const logits = this.forward(x!);
    this.log("val_loss", crossEntropy(logits, y!));
    this.log("val_acc", accuracyOf(logits, y!));
  }

  override testStep([x, y]: Batch): void {
    const logits = this.forward(x!);
    this.log("test_loss", crossEntropy(logits, y!));
    this.log("test_acc", accuracyOf(logits, y!));
  }

  configureOptimizers(): Adam | OptimizerConfig {
    return new Adam(this.parameters(), { lr: this.lr });
  }
}

/** The demo classifier: a 784-128-10 MLP trained with Adam on cross-entropy. */
export class MnistClassifier extends DigitClassifier {
  readonly net: Sequential;

  constructor(lr = 2e-3, hidden = 128) {
    super(lr);
    this.net = new Sequential(new Linear(784, hidden), new ReLU(), new Linear(hidden, 10));
  }

  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
}

/**
 * A small convolutional net for 28 x 28 digits: two 3 x 3 convolutions (1 -> 8 -> 16 channels),
 * each followed by batch norm, ReLU and 2 x 2 max pooling, then one linear layer (784 -> 10).
 */
export class MnistCnn extends DigitClassifier {
  readonly net: Sequential;

  /** With `cosineSteps`, the learning rate decays to 0 along a cosine over that many optimizer steps. */
  constructor(
    lr = 3e-3,
    readonly cosineSteps: number | null = null,
  ) {
    super(lr);
    this.net = new Sequential(
      new Conv2d(1, 8, 3, { padding: 1 }),
      new BatchNorm2d(8),
      new ReLU(),
      new MaxPool2d(2),
      new Conv2d(8, 16, 3, { padding: 1 }),
      new BatchNorm2d(16),
      new ReLU(),
      new MaxPool2d(2),
      new Flatten(),
      new Linear(16 * 7 * 7, 10),
    );
  }

  override configureOptimizers(): Adam | OptimizerConfig {
    const optimizer = new Adam(this.parameters(), { lr: this.lr });
    if (this.cosineSteps === null) return optimizer;
    return { optimizer, lrScheduler: { scheduler: new CosineAnnealingLR(optimizer, this.cosineSteps), interval: "step" as const } };
  }

  forward(x: Tensor): Tensor {
    return this.net.forward(x.rank === 2 ? x.reshape([x.shape[0]!, 1, 28, 28]) : x);
  }
}
