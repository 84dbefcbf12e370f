import { accelerators, formatSupportMatrix, supportMatrix } from "@nbit/core";
import "@nbit/tpu";
import "@nbit/cpu";

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const USAGE = `Usage: nbit <command> [options]

Commands:
  matrix            print the precision support matrix of every registered accelerator
  demo              train the demo model (see README)
  help              show this message`;

export async function main(argv: readonly string[], io: CliIO = { out: console.log, err: console.error }): Promise<number> {
  const [command = "help"] = argv;
  switch (command) {
    case "matrix":
      io.out(formatSupportMatrix(supportMatrix(accelerators)));
      return 0;
    case "demo":
      io.out("The demo trains once the Trainer lands; meanwhile, the support matrix:");
      io.out(formatSupportMatrix(supportMatrix(accelerators)));
      return 0;
    case "help":
    case "--help":
    case "-h":
      io.out(USAGE);
      return 0;
    default:
      io.err(`Unknown command "${command}".\n${USAGE}`);
      return 2;
  }
}
