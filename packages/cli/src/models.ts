import { accuracyOf, Adam, crossEntropy, LightningModule, Linear, ReLU, Sequential, type Batch, type Tensor } from "@nbit/core";

/** The demo classifier: a 784-128-10 MLP trained with Adam on cross-entropy. */
export class MnistClassifier extends LightningModule {
  readonly net: Sequential;

  constructor(
    readonly lr = 2e-3,
    hidden = 128,
  ) {
    super();
    this.net = new Sequential(new Linear(784, hidden), new ReLU(), new Linear(hidden, 10));
  }

  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }

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

  configureOptimizers() {
    return new Adam(this.parameters(), { lr: this.lr });
  }
}
