import {
  Adam,
  arange,
  crossEntropy,
  DataLoader,
  Embedding,
  Generator,
  LayerNorm,
  LightningModule,
  Linear,
  TensorDataset,
  Trainer,
  TransformerBlock,
  type Accelerator,
  type Batch,
  type Precision,
  type PrecisionInput,
  type Tensor,
} from "@nbit/core";
import { bigramNll, loadNames, MAX_NAME_LENGTH, nameDataset, predictedCharacters, splitNames, Vocabulary } from "./names.js";

export interface CharTransformerConfig {
  readonly vocabSize: number;
  readonly blockSize: number;
  readonly dModel: number;
  readonly numHeads: number;
  readonly numLayers: number;
  readonly dropout: number;
  readonly lr: number;
}

export const DEFAULT_CHAR_TRANSFORMER: Omit<CharTransformerConfig, "vocabSize"> = {
  blockSize: MAX_NAME_LENGTH + 1,
  dModel: 64,
  numHeads: 4,
  numLayers: 2,
  dropout: 0,
  lr: 3e-3,
};

/**
 * A decoder-only character model (as makemore's Transformer): token and position embeddings,
 * causal pre-norm blocks, a final layer norm and a linear head to next-character logits.
 */
export class CharTransformer extends LightningModule {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly blocks: TransformerBlock[];
  readonly ln_f: LayerNorm;
  readonly lm_head: Linear;

  constructor(readonly config: CharTransformerConfig) {
    super();
    const { vocabSize, blockSize, dModel, numHeads, numLayers, dropout } = config;
    this.wte = new Embedding(vocabSize, dModel);
    this.wpe = new Embedding(blockSize, dModel);
    this.blocks = Array.from({ length: numLayers }, () => new TransformerBlock(dModel, numHeads, { causal: true, dropout }));
    this.ln_f = new LayerNorm(dModel);
    this.lm_head = new Linear(dModel, vocabSize);
  }

  /** int32 tokens [batch, t] (t <= blockSize) to logits [batch, t, vocab]. */
  forward(tokens: Tensor): Tensor {
    const t = tokens.shape[1]!;
    let h = this.wte.forward(tokens).add(this.wpe.forward(arange(t)));
    for (const block of this.blocks) h = block.forward(h);
    return this.lm_head.forward(this.ln_f.forward(h));
  }

  /** Negative log-likelihood of each target character, zero on padding: [batch * t] in float32. */
  maskedNll([tokens, targets, mask]: Batch): Tensor {
    const logits = this.forward(tokens!);
    const [b, t, v] = logits.shape as [number, number, number];
    return crossEntropy(logits.reshape([b * t, v]), targets!.reshape([b * t]), "none").mul(mask!.reshape([b * t]));
  }

  trainingStep(batch: Batch): Tensor {
    const loss = this.maskedNll(batch).sum().div(batch[2]!.sum());
    this.log("train_loss", loss);
    return loss;
  }

  override predictStep(batch: Batch): Tensor {
    return batch.length === 3 ? this.maskedNll(batch) : this.forward(batch[0]!);
  }

  configureOptimizers() {
    return new Adam(this.parameters(), { lr: this.config.lr });
  }
}

export interface NamesRunOptions {
  readonly accelerator?: Accelerator;
  readonly precision?: PrecisionInput;
  readonly maxSteps: number;
  readonly batchSize: number;
  readonly lr?: number;
  readonly seed: number;
  readonly progressBar: boolean;
  readonly samples?: number;
  readonly model?: Partial<Omit<CharTransformerConfig, "vocabSize" | "lr">>;
  readonly warn?: (message: string) => void;
  /** Replay the captured training step instead of recording each one (the Trainer's `captureSteps`). */
  readonly captureSteps?: boolean;
}

export interface NamesRunResult {
  readonly precision: Precision;
  readonly accelerator: string;
  readonly trainNames: number;
  readonly valNames: number;
  /** Validation loss of the trained model, in nats per character. */
  readonly valLoss: number;
  /** The add-one bigram model's loss on the same validation characters. */
  readonly bigramLoss: number;
  readonly losses: readonly number[];
  readonly samples: readonly string[];
  readonly steps: number;
  /** Steps replayed from the captured program (0 without `captureSteps`). */
  readonly replayedSteps: number;
  readonly seconds: number;
  readonly parameterCount: number;
  readonly parameterBytes: number;
}

/** Mean per-character validation loss: summed masked NLL over the loader, divided by the characters predicted. */
async function validationLoss(trainer: Trainer, model: CharTransformer, loader: DataLoader, characters: number): Promise<number> {
  let total = 0;
  for (const out of await trainer.predict(model, loader)) for (const v of await out.data()) total += v;
  return total / characters;
}

/** Draws `count` names from the model, one character at a time from its softmax, until '.' or the context is full. */
export async function sampleNames(trainer: Trainer, model: CharTransformer, vocab: Vocabulary, count: number, seed: number): Promise<string[]> {
  const block = model.config.blockSize;
  const tokens = new Int32Array(count * block);
  const done = new Array<boolean>(count).fill(false);
  const names = Array.from({ length: count }, () => [] as number[]);
  const g = new Generator(seed);
  for (let pos = 0; pos < block - 1 && done.includes(false); pos++) {
    const loader = new DataLoader(new TensorDataset({ data: tokens, sampleShape: [block], dtype: "int32" }), { batchSize: count });
    const [logits] = await trainer.predict(model, loader);
    const values = await logits!.data();
    const v = vocab.size;
    for (let n = 0; n < count; n++) {
      if (done[n]) continue;
      const row = (n * block + pos) * v;
      const top = Math.max(...values.subarray(row, row + v));
      const p = Array.from(values.subarray(row, row + v), (x) => Math.exp(x - top));
      let r = g.random() * p.reduce((a, b) => a + b, 0);
      let next = 0;
      while (next < v - 1 && (r -= p[next]!) > 0) next++;
      if (next === 0) done[n] = true;
      else {
        names[n]!.push(next);
        tokens[n * block + pos + 1] = next;
      }
    }
  }
  return names.map((t) => vocab.decode(t));
}

/** Trains the character transformer on the names corpus, scores it against the bigram baseline, and samples names. */
export async function trainNames(options: NamesRunOptions): Promise<NamesRunResult> {
  const names = loadNames();
  const vocab = new Vocabulary(names);
  const split = splitNames(names);
  const trainer = new Trainer({
    ...(options.accelerator !== undefined ? { accelerator: options.accelerator } : {}),
    ...(options.precision !== undefined ? { precision: options.precision } : {}),
    maxEpochs: -1,
    maxSteps: options.maxSteps,
    enableProgressBar: options.progressBar,
    enableModelSummary: options.progressBar,
    enableCheckpointing: false,
    logger: false,
    seed: options.seed,
    ...(options.warn ? { warn: options.warn } : {}),
    ...(options.captureSteps ? { captureSteps: true } : {}),
  });
  const config: CharTransformerConfig = { ...DEFAULT_CHAR_TRANSFORMER, ...options.model, lr: options.lr ?? DEFAULT_CHAR_TRANSFORMER.lr, vocabSize: vocab.size };
  const model = trainer.initModule(() => new CharTransformer(config));
  const train = new DataLoader(nameDataset(split.train, vocab, config.blockSize), {
    batchSize: options.batchSize,
    shuffle: true,
    seed: options.seed,
    dropLast: true,
  });
  const val = new DataLoader(nameDataset(split.val, vocab, config.blockSize), { batchSize: 512 });
  const started = performance.now();
  await trainer.fit(model, train);
  const seconds = (performance.now() - started) / 1000;
  const valLoss = await validationLoss(trainer, model, val, predictedCharacters(split.val));
  const samples = await sampleNames(trainer, model, vocab, options.samples ?? 10, options.seed);
  return {
    precision: trainer.precision,
    accelerator: trainer.accelerator.name,
    trainNames: split.train.length,
    valNames: split.val.length,
    valLoss,
    bigramLoss: bigramNll(split.train, split.val, vocab),
    losses: trainer.losses,
    samples,
    steps: trainer.globalStep,
    replayedSteps: trainer.stepCapture?.stats.replayed ?? 0,
    seconds,
    parameterCount: model.parameterCount(),
    parameterBytes: model.parameterBytes(),
  };
}
