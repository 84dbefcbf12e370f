import { describe, expect, it } from "vitest";
import { formatDuration, formatProgressLine, type ProgressFields } from "../src/trainer/progress-bar.js";
import {
  DataLoader,
  LightningModule,
  Linear,
  ProgressBar,
  ReferenceBackend,
  SGD,
  TensorDataset,
  Trainer,
  mseLoss,
  type Accelerator,
  type Batch,
  type Tensor,
} from "../src/index.js";

const fields: ProgressFields = { epoch: "Epoch 3/10", done: 45, total: 133, eta: "0:07", rate: "2345 samples/s", metrics: "train_loss=0.3456" };

/** What a terminal shows after a stream of carriage-return redraws: each redrawn line, control codes removed. */
const screenLines = (written: string) =>
  written
    .split(/[\r\n]/)
    .map((l) => l.replaceAll("\x1b[K", ""))
    .filter(Boolean);

describe("formatProgressLine", () => {
  it("shows epoch, bar, counts, ETA, metrics and throughput when there is room", () => {
    expect(formatProgressLine(fields, 200)).toBe("Epoch 3/10 [=========>                    ] 45/133 ETA 0:07 train_loss=0.3456 2345 samples/s");
  });

  it.each([200, 120, 100, 80, 72, 60, 50, 40, 30, 20])("fits %i columns without wrapping", (columns) => {
    const line = formatProgressLine(fields, columns);
    expect(line.length).toBeLessThan(columns);
    if (columns >= 50) {
      expect(line).toContain("ETA 0:07");
      expect(line).toContain("train_loss=0.3456");
    }
  });

  it("shrinks the bar, then drops the throughput, then the bar", () => {
    expect(formatProgressLine(fields, 80)).toBe("Epoch 3/10 [=====>           ] 45/133 ETA 0:07 train_loss=0.3456 2345 samples/s");
    expect(formatProgressLine(fields, 60)).toBe("Epoch 3/10 [===>        ] 45/133 ETA 0:07 train_loss=0.3456");
    expect(formatProgressLine(fields, 50)).toBe("Epoch 3/10 45/133 ETA 0:07 train_loss=0.3456");
    // Too narrow for everything: cut, never wrapped.
    expect(formatProgressLine(fields, 20)).toBe("Epoch 3/10 45/133 E");
  });

  it("formats durations as m:ss and h:mm:ss", () => {
    expect([formatDuration(7.4), formatDuration(65), formatDuration(3600 + 62), formatDuration(Number.NaN)]).toEqual(["0:07", "1:05", "1:01:02", "?"]);
  });
});

class Regression extends LightningModule {
  readonly net = new Linear(4, 1);
  constructor(private readonly onBar: boolean) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
  trainingStep([x, y]: Batch) {
    const loss = mseLoss(this.forward(x!), y!);
    if (this.onBar) this.log("train_loss", loss, { progBar: true });
    return loss;
  }
  configureOptimizers() {
    return new SGD(this.parameters(), { lr: 0.05 });
  }
}

const reference: Accelerator = {
  name: "bar-test",
  description: "reference",
  supportedPrecisions: ["32-true"],
  legacyHalfPrecision: "bf16-mixed",
  isAvailable: () => ({ available: true }),
  deviceCount: () => 1,
  createBackend: () => new ReferenceBackend(),
};

async function trainWithBar(stream: { write(s: string): unknown; isTTY?: boolean; columns?: number }, onBar: boolean) {
  const x = Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i));
  const y = Array.from({ length: 64 }, (_, i) => Math.cos(i));
  const trainer = new Trainer({
    accelerator: reference,
    maxEpochs: 2,
    logger: false,
    enableCheckpointing: false,
    callbacks: [new ProgressBar({ stream })],
  });
  const model = trainer.initModule(() => new Regression(onBar));
  await trainer.fit(model, new DataLoader(new TensorDataset({ data: x, sampleShape: [4] }, { data: y, sampleShape: [1] }), { batchSize: 4 }));
}

describe("ProgressBar", () => {
  it("fits an 80-column terminal, shows the loss once and an ETA", async () => {
    let written = "";
    await trainWithBar({ isTTY: true, columns: 80, write: (s: string) => (written += s) }, true);
    const lines = screenLines(written);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) {
      expect(line.length).toBeLessThan(80);
      expect(line).toMatch(/^Epoch [12]\/2 \[[=> ]+\] \d+\/16 ETA \d+:\d\d train_loss=\d\.\d{4}( \d+ samples\/s)?$/);
      expect(line.match(/loss/g)).toHaveLength(1);
    }
    // Each epoch ends its line once.
    expect(written.match(/\n/g)).toHaveLength(2);
    expect(lines.at(-1)).toMatch(/^Epoch 2\/2 \[=+>\] 16\/16 ETA 0:00 /);
  });

  it("shows the step loss when nothing is logged to the bar, and narrows with the terminal", async () => {
    let written = "";
    await trainWithBar({ isTTY: true, columns: 40, write: (s: string) => (written += s) }, false);
    for (const line of screenLines(written)) {
      expect(line.length).toBeLessThan(40);
      expect(line).toMatch(/^Epoch [12]\/2 \d+\/16 ETA \d+:\d\d loss=\d\.\d{4}$/);
    }
  });

  it("prints a line per tenth of an epoch when not on a terminal", async () => {
    let written = "";
    await trainWithBar({ write: (s: string) => (written += s) }, true);
    const lines = written.trimEnd().split("\n");
    expect(lines.length).toBeLessThanOrEqual(22);
    expect(lines.filter((l) => l.startsWith("Epoch 1/2 [=============================>] 16/16 ETA 0:00 train_loss="))).toHaveLength(1);
  });
});
