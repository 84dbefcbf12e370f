import { describe, expect, it } from "vitest";
import { bigramNll, loadNames, nameDataset, predictedCharacters, splitNames, Vocabulary } from "../src/names.js";
import { CudaAccelerator } from "@nbit/cuda";
import { TpuAccelerator } from "@nbit/tpu";
import { trainNames } from "../src/transformer.js";
import { transformerDemoPrecision } from "../src/transformer-demo.js";
import { run } from "./run-cli.js";

describe("the names corpus", () => {
  it("lowercases, dedupes and sorts both shipped lists, dropping entries that are not names", () => {
    const names = loadNames([() => ["Anna", "anna ", "Bo", "x1", 7, "Ann-Marie", "Averyveryverylongname"], () => ["ANNA", "Cy"]]);
    expect(names).toEqual(["ann-marie", "anna", "bo", "cy"]);
    expect(() => loadNames([() => "not a list"])).toThrow(/expected an array of strings/);
    const shipped = loadNames();
    expect(shipped.length).toBeGreaterThan(8000);
    expect(new Set(shipped).size).toBe(shipped.length);
    expect(shipped.every((n) => /^[a-z][a-z-]*$/.test(n))).toBe(true);
  });

  it("splits with a fixed seed, disjointly, 90/10", () => {
    const names = loadNames();
    const a = splitNames(names);
    expect(splitNames(names)).toEqual(a);
    expect(a.val.length).toBe(Math.round(names.length * 0.1));
    const train = new Set(a.train);
    expect(a.val.some((n) => train.has(n))).toBe(false);
    expect(splitNames(names, 0.1, 7).val).not.toEqual(a.val);
  });

  it("encodes each name as '.'+name -> name+'.', masked to the name's characters plus the end", async () => {
    const vocab = new Vocabulary(["ab", "ca"]);
    expect(vocab.chars).toEqual([".", "a", "b", "c"]);
    const [x, y, mask] = nameDataset(["ab", "c"], vocab, 4).batch([0, 1]);
    expect(Array.from(x!.node.host!)).toEqual([0, 1, 2, 0, 0, 3, 0, 0]);
    expect(Array.from(y!.node.host!)).toEqual([1, 2, 0, 0, 3, 0, 0, 0]);
    expect(Array.from(mask!.node.host!)).toEqual([1, 1, 1, 0, 1, 1, 0, 0]);
    expect(predictedCharacters(["ab", "c"])).toBe(5);
    expect(() => nameDataset(["abca"], vocab, 4)).toThrow(/does not fit a context of 4/);
    expect(() => nameDataset(["abd"], vocab, 4)).toThrow(/character "d" is not in the vocabulary/);
  });

  it("scores the add-one bigram model in nats per character", () => {
    const vocab = new Vocabulary(["ab"]);
    // Counts from "ab" plus one: row '.' -> [1, 2, 1], row a -> [1, 1, 2], row b -> [2, 1, 1].
    const want = -(Math.log(2 / 4) + Math.log(2 / 4) + Math.log(2 / 4)) / 3;
    expect(bigramNll(["ab"], ["ab"], vocab)).toBeCloseTo(want, 12);
    // ".ba.": . -> b, b -> a and a -> . were never seen: one count of four each.
    expect(bigramNll(["ab"], ["ba"], vocab)).toBeCloseTo(Math.log(4), 12);
  });
});

describe("nbit demo --model transformer", () => {
  it("trains in bf16-mixed, beats the bigram baseline on held-out names and samples new ones", async () => {
    const { code, out, err } = await run("demo", "--model", "transformer", "--max-steps", "40", "--no-progress-bar");
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toMatch(/^cpu bf16-mixed: 40 steps/m);
    const [, model, bigram] = /validation loss ([\d.]+) nats\/char \(bigram baseline ([\d.]+)/.exec(out)!;
    expect(Number(model)).toBeLessThan(Number(bigram));
    expect(out).toMatch(/^samples: [a-z-]*(, [a-z-]*){9}$/m);
  }, 300_000);

  it("refuses an unknown model", async () => {
    const { code, err } = await run("demo", "--model", "rnn");
    expect(code).toBe(2);
    expect(err).toMatch(/Allowed choices are mlp, cnn, transformer\./);
  });
});

describe("the names transformer on the JavaScript backends", () => {
  // A one-block model and a few steps: these backends run JavaScript kernels here (the cuda backend
  // on tfjs's CPU kernels, not a GPU), so this checks that the example trains in each one's
  // precision, not how far it gets.
  for (const [name, accelerator, precision] of [
    ["tpu", new TpuAccelerator(), "bf16-mixed"],
    ["cuda (tfjs-cpu)", new CudaAccelerator("tfjs-cpu"), "16-mixed"],
  ] as const) {
    it(`${name}: the demo's precision is ${precision}, and 12 steps lower the training loss`, async () => {
      expect(transformerDemoPrecision(accelerator)).toBe(precision);
      const result = await trainNames({
        accelerator,
        precision,
        maxSteps: 12,
        batchSize: 16,
        lr: 1e-2,
        seed: 0,
        progressBar: false,
        samples: 2,
        model: { dModel: 16, numHeads: 2, numLayers: 1 },
      });
      expect(result.precision).toBe(precision);
      expect(result.losses.every(Number.isFinite)).toBe(true);
      const [first, last] = [result.losses.slice(0, 3), result.losses.slice(-3)].map((l) => l.reduce((a, b) => a + b) / l.length);
      expect(last!).toBeLessThan(0.9 * first!);
      expect(Number.isFinite(result.valLoss)).toBe(true);
    }, 300_000);
  }
});
