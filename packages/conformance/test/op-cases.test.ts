import { PRIMITIVE_OPS } from "@nbit/core";
import { describe, expect, it } from "vitest";
import { OP_CASES } from "../src/op-cases.js";

describe("the kit's op cases", () => {
  it("cover every primitive, so a new primitive cannot go untested", () => {
    const covered = new Set(OP_CASES.map((c) => c.op));
    expect(PRIMITIVE_OPS.filter((op) => !covered.has(op))).toEqual([]);
  });
});
