import type { BatchOutcome, Callback } from "./callbacks.js";
import type { Batch, LightningModule } from "./lightning-module.js";
import type { Trainer } from "./trainer.js";
import { checkInteger } from "../validation.js";

export interface ProgressBarOptions {
  readonly stream?: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean; columns?: number };
  /** Widest the bar itself may be, in characters (default 30). */
  readonly width?: number;
  /** Characters per line (default: the terminal's width, read at every redraw; unlimited when not a terminal). */
  readonly columns?: number;
}

/** What one progress line shows, already formatted. */
export interface ProgressFields {
  /** "Epoch 2/10", or "Epoch 2" without an epoch limit. */
  readonly epoch: string;
  readonly done: number;
  readonly total: number;
  /** Time left in this epoch, e.g. "0:07". */
  readonly eta: string;
  /** e.g. "2345 samples/s". */
  readonly rate: string;
  /** e.g. "train_loss=0.3456". */
  readonly metrics: string;
}

const MIN_BAR = 10;
/** Redraws on a terminal at most this often (the last batch of an epoch is always drawn). */
const REDRAW_MS = 100;

/** m:ss, or h:mm:ss from an hour up. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const pad = (n: number) => String(n).padStart(2, "0");
  return hms[0]! > 0 ? `${hms[0]}:${pad(hms[1]!)}:${pad(hms[2]!)}` : `${hms[1]}:${pad(hms[2]!)}`;
}

const formatMetric = (v: number) => (v === 0 || !Number.isFinite(v) || Math.abs(v) >= 1e-3 ? v.toFixed(4) : v.toExponential(2));

/**
 * One progress line of at most `columns - 1` characters (a line filling the last column wraps on
 * some terminals). The bar shrinks first (to at most `maxBar`), then the throughput is dropped,
 * then the bar; a line that still does not fit is cut.
 */
export function formatProgressLine(f: ProgressFields, columns: number, maxBar = 30): string {
  const budget = columns - 1;
  const compose = (bar: number, rate: boolean) => {
    const filled = bar > 0 ? Math.round((f.done / f.total) * bar) : 0;
    const drawn = bar > 0 ? ` [${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? ">" : ""}${" ".repeat(bar - filled)}]` : "";
    return [`${f.epoch}${drawn}`, `${f.done}/${f.total}`, `ETA ${f.eta}`, f.metrics, rate ? f.rate : ""].filter(Boolean).join(" ");
  };
  for (const rate of [true, false]) {
    const room = budget - compose(0, rate).length - 3; // " [" and "]"
    if (room >= MIN_BAR) return compose(Math.min(maxBar, room), rate);
  }
  const bare = compose(0, false);
  return bare.length <= budget ? bare : bare.slice(0, Math.max(0, budget));
}

/**
 * nbit draws its own line rather than use cli-progress: that library redraws from its own timer,
 * which outlives an epoch that throws (the Trainer has no exception hook to stop it), and it cuts
 * lines at the terminal's width rather than fitting the bar to it.
 *
 * A progress bar per epoch: batches done, ETA, the metrics logged with `progBar: true` (the step's
 * loss when none is), and throughput, fitted to the terminal's width. Not on a terminal, it prints
 * a line at every tenth of the epoch instead.
 */
export class ProgressBar implements Callback {
  private started = 0;
  private samples = 0;
  private lastPrinted = -1;
  private lastDrawn = 0;
  private readonly stream: NonNullable<ProgressBarOptions["stream"]>;

  constructor(readonly options: ProgressBarOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    if (options.width !== undefined) checkInteger("ProgressBar width", options.width, 1);
    if (options.columns !== undefined) checkInteger("ProgressBar columns", options.columns, 1);
  }

  onTrainEpochStart(): void {
    this.started = performance.now();
    this.samples = 0;
    this.lastPrinted = -1;
    this.lastDrawn = 0;
  }

  onTrainBatchEnd(trainer: Trainer, _m: LightningModule, outcome: BatchOutcome, batch: Batch, batchIdx: number): void {
    this.samples += batch[0]?.shape[0] ?? 0;
    const total = trainer.numTrainingBatches;
    const done = batchIdx + 1;
    const now = performance.now();
    const last = done === total;
    if (this.stream.isTTY && !last && now - this.lastDrawn < REDRAW_MS) return;
    this.lastDrawn = now;
    const seconds = (now - this.started) / 1000;
    const shown = Object.entries(trainer.progressBarMetrics);
    const fields: ProgressFields = {
      epoch: `Epoch ${trainer.currentEpoch + 1}${Number.isFinite(trainer.maxEpochs) ? `/${trainer.maxEpochs}` : ""}`,
      done,
      total,
      eta: formatDuration(seconds > 0 ? (seconds / done) * (total - done) : Number.NaN),
      rate: `${(seconds > 0 ? this.samples / seconds : 0).toFixed(0)} samples/s`,
      metrics: (shown.length ? shown : [["loss", outcome.loss] as const]).map(([k, v]) => `${k}=${formatMetric(v)}`).join(" "),
    };
    const maxBar = this.options.width ?? 30;
    if (this.stream.isTTY) {
      const columns = this.options.columns ?? (("columns" in this.stream ? this.stream.columns : undefined) || 80);
      this.stream.write(`\r${formatProgressLine(fields, columns, maxBar)}\x1b[K${last ? "\n" : ""}`);
    } else {
      const tenth = Math.floor((done / total) * 10);
      if (tenth !== this.lastPrinted || last) {
        this.lastPrinted = tenth;
        this.stream.write(`${formatProgressLine(fields, this.options.columns ?? Infinity, maxBar)}\n`);
      }
    }
  }

  onValidationEpochEnd(trainer: Trainer): void {
    const val = Object.entries(trainer.callbackMetrics).filter(([k]) => k.startsWith("val"));
    if (val.length) this.stream.write(`  validation: ${val.map(([k, v]) => `${k}=${v.toFixed(4)}`).join(" ")}\n`);
  }
}
