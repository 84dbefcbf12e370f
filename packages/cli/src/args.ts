import { NbitError } from "@nbit/core";

export interface ParsedArgs {
  readonly command: string;
  readonly options: Record<string, string | true>;
}

/** `cmd --key value --flag` into a command and options (keys in kebab-case as typed). */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const [command = "help", ...rest] = argv;
  const options: Record<string, string | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (!arg.startsWith("--")) throw new NbitError("INVALID_ARGUMENT", `Unexpected argument "${arg}"`);
    const [key, inline] = arg.slice(2).split("=", 2) as [string, string | undefined];
    if (inline !== undefined) options[key] = inline;
    else if (rest[i + 1] !== undefined && !rest[i + 1]!.startsWith("--")) options[key] = rest[++i]!;
    else options[key] = true;
  }
  return { command, options };
}

export function numberOption(options: Record<string, string | true>, key: string, fallback: number): number {
  const v = options[key];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isFinite(n)) throw new NbitError("INVALID_ARGUMENT", `--${key} expects a number, got ${JSON.stringify(v)}`);
  return n;
}

export function stringOption(options: Record<string, string | true>, key: string, fallback: string): string {
  const v = options[key];
  if (v === undefined) return fallback;
  if (v === true) throw new NbitError("INVALID_ARGUMENT", `--${key} expects a value`);
  return v;
}
