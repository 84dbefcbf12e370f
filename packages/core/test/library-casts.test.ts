import { describe, expect, it } from "vitest";
import { watchManualCasts } from "../src/engine/cast-watch.js";
import {
  AUTOCAST_POLICIES,
  autocast,
  BatchNorm1d,
  Conv2d,
  crossEntropy,
  GELU,
  LayerNorm,
  Linear,
  MaxPool2d,
  mseLoss,
  tensor,
  TransformerBlock,
  type AutocastDeviceType,
} from "../src/index.js";

const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + seed));

describe("the library's own layers inside a watched training step", () => {
  // Under each device type's autocast table a layer may receive 16-bit inputs it widens itself:
  // those casts are the library's, and must not be reported as the user's manual casts.
  for (const device of ["cpu", "cuda", "tpu"] as const satisfies readonly AutocastDeviceType[]) {
    it(`${device} table: layers on bfloat16 inputs cast nothing the user wrote`, () => {
      const warnings: string[] = [];
      watchManualCasts(
        {},
        "bf16-mixed",
        "bfloat16",
        (m) => warnings.push(m),
        () =>
          autocast(
            "bfloat16",
            () => {
              const h = new Linear(8, 8).forward(tensor(values(32, 1), [4, 8]));
              expect(h.dtype).toBe("bfloat16");
              new LayerNorm(8).forward(h);
              new GELU().forward(h);
              new BatchNorm1d(8).forward(h);
              new TransformerBlock(8, 2, { causal: true, dimFeedforward: 16 }).forward(h.reshape([1, 4, 8]));
              const image = new Conv2d(1, 2, 3, { padding: 1 }).forward(tensor(values(32, 2), [2, 1, 4, 4]));
              new MaxPool2d(2).forward(image);
              crossEntropy(h, tensor([0, 1, 2, 3], [4], "int32"));
              mseLoss(h, h.detach());
            },
            AUTOCAST_POLICIES[device],
          ),
      );
      expect(warnings).toEqual([]);
    });
  }
});
