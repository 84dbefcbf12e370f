import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkInteger, InvalidArgumentError } from "../validation.js";
import { NbitError } from "../errors.js";

export interface Logger {
  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void;
  logHyperparams?(params: Readonly<Record<string, unknown>>): void;
  /** Where this run's files go, if anywhere. */
  readonly logDir?: string;
  flush?(): void;
}

/** One CSV field as RFC 4180 writes it: quoted when it holds a comma, a quote or a line break. */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Writes metrics to `<saveDir>/<name>/version_<n>/metrics.csv`, one row per logging call. Without
 * an explicit version it takes the highest existing version + 1, as Lightning, and reserves the
 * folder by creating it, so it never writes into another run's folder.
 */
export class CSVLogger implements Logger {
  private readonly root: string;
  private readonly version: number | undefined;
  private dir: string | null = null;
  private readonly rows: Map<string, number>[] = [];
  private readonly columns = new Set<string>(["step"]);

  constructor(saveDir = "nbit_logs", name = "default", version?: number) {
    if (typeof saveDir !== "string" || saveDir === "") throw new InvalidArgumentError("CSVLogger saveDir", "a non-empty path", saveDir);
    if (typeof name !== "string" || name === "") throw new InvalidArgumentError("CSVLogger name", "a non-empty folder name", name);
    if (version !== undefined) checkInteger("CSVLogger version", version, 0);
    this.root = join(saveDir, name);
    this.version = version;
  }

  /** This run's folder; created (and its version chosen) on first use. */
  get logDir(): string {
    this.dir ??= this.reserve();
    return this.dir;
  }

  private reserve(): string {
    mkdirSync(this.root, { recursive: true });
    if (this.version !== undefined) {
      const dir = join(this.root, `version_${this.version}`);
      if (existsSync(join(dir, "metrics.csv")))
        throw new NbitError("LOG_DIR_IN_USE", `CSVLogger: ${dir} already holds a run's metrics.csv; pass another version or none (the next free one is used).`);
      mkdirSync(dir, { recursive: true });
      return dir;
    }
    const taken = readdirSync(this.root).flatMap((d) => (/^version_(0|[1-9][0-9]*)$/.test(d) ? [Number(d.slice(8))] : []));
    for (let v = taken.length ? Math.max(...taken) + 1 : 0; ; v++) {
      const dir = join(this.root, `version_${v}`);
      try {
        mkdirSync(dir); // fails if another logger took this version first
        return dir;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
    }
  }

  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void {
    const row = new Map<string, number>([["step", step]]);
    for (const [k, v] of Object.entries(metrics)) {
      this.columns.add(k);
      row.set(k, v);
    }
    this.rows.push(row);
  }

  logHyperparams(params: Readonly<Record<string, unknown>>): void {
    writeFileSync(join(this.logDir, "hparams.json"), JSON.stringify(params, null, 2));
  }

  /** Rewrites the CSV (columns can appear mid-run). */
  flush(): void {
    const cols = [...this.columns];
    const lines = [cols.map(csvField).join(","), ...this.rows.map((r) => cols.map((c) => (r.has(c) ? String(r.get(c)) : "")).join(","))];
    writeFileSync(join(this.logDir, "metrics.csv"), `${lines.join("\n")}\n`);
  }

  get metrics(): readonly Record<string, number>[] {
    return this.rows.map((r) => Object.fromEntries(r));
  }
}

/** Keeps metrics in memory (for tests and programmatic use). */
export class MemoryLogger implements Logger {
  readonly rows: (Record<string, number> & { step: number })[] = [];
  logMetrics(metrics: Readonly<Record<string, number>>, step: number): void {
    this.rows.push({ step, ...metrics });
  }
}
