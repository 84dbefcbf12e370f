import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Logger {
  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void;
  logHyperparams?(params: Readonly<Record<string, unknown>>): void;
  /** Where this run's files go, if anywhere. */
  readonly logDir?: string;
  flush?(): void;
}

/** Writes metrics to `<saveDir>/<name>/version_<n>/metrics.csv`, one row per logging call. */
export class CSVLogger implements Logger {
  readonly logDir: string;
  private readonly rows: Record<string, number>[] = [];
  private readonly columns = new Set<string>(["step"]);

  constructor(saveDir = "nbit_logs", name = "default", version?: number) {
    const root = join(saveDir, name);
    const v = version ?? (existsSync(root) ? readdirSync(root).filter((d) => /^version_\d+$/.test(d)).length : 0);
    this.logDir = join(root, `version_${v}`);
  }

  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void {
    for (const k of Object.keys(metrics)) this.columns.add(k);
    this.rows.push({ step, ...metrics });
  }

  logHyperparams(params: Readonly<Record<string, unknown>>): void {
    mkdirSync(this.logDir, { recursive: true });
    writeFileSync(join(this.logDir, "hparams.json"), JSON.stringify(params, null, 2));
  }

  /** Rewrites the CSV (columns can appear mid-run). */
  flush(): void {
    mkdirSync(this.logDir, { recursive: true });
    const cols = [...this.columns];
    const lines = [cols.join(","), ...this.rows.map((r) => cols.map((c) => (c in r ? String(r[c]) : "")).join(","))];
    writeFileSync(join(this.logDir, "metrics.csv"), `${lines.join("\n")}\n`);
  }

  get metrics(): readonly Record<string, number>[] {
    return this.rows;
  }
}

/** Keeps metrics in memory (for tests and programmatic use). */
export class MemoryLogger implements Logger {
  readonly rows: (Record<string, number> & { step: number })[] = [];
  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void {
    this.rows.push({ step, ...metrics });
  }
}
