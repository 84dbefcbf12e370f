import { describe, expect, it } from "vitest";
import { lossCurvesSvg } from "../src/plot.js";

const polylines = (svg: string) => [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => m[1]);

describe("lossCurvesSvg", () => {
  it("adds a panel of each series minus the reference, step by step", () => {
    const svg = lossCurvesSvg(
      [
        { label: "a", values: [2, 1, 0.5] },
        { label: "b", values: [3, 2, 1] },
      ],
      { reference: "a" },
    );
    expect(svg).toMatch(/^<svg [^>]*height="710"/);
    expect(svg).toContain(">loss minus a loss, step by step</text>");
    const lines = polylines(svg);
    expect(lines).toHaveLength(4);
    // The differences panel spans y 440..660 with zero at 550; b - a = [1, 1, 0.5] on a +-1 axis.
    expect(lines[2]).toBe("80.0,550.0 345.0,550.0 610.0,550.0");
    expect(lines[3]).toBe("80.0,440.0 345.0,440.0 610.0,495.0");
  });

  it("draws only the losses without a reference, or with one that is not plotted", () => {
    for (const options of [{}, { reference: "zzz" }]) {
      const svg = lossCurvesSvg(
        [
          { label: "a", values: [2, 1, 0.5] },
          { label: "b", values: [3, 2] },
        ],
        options,
      );
      expect(svg).toMatch(/^<svg [^>]*height="480"/);
      expect(polylines(svg)).toHaveLength(2);
      expect(svg).not.toContain("loss minus");
    }
  });

  it("leaves out steps where a difference is not finite", () => {
    const svg = lossCurvesSvg(
      [
        { label: "a", values: [2, 1, 0.5] },
        { label: "b", values: [3, Number.POSITIVE_INFINITY, 1] },
      ],
      { reference: "a" },
    );
    // Log axis from 0.5 to 3: loss 1 sits log(2)/log(6) of the way up the 340-pixel panel.
    expect(polylines(svg)[1]).toBe("80.0,40.0 610.0,248.5");
    expect(polylines(svg)[3]).toBe("80.0,440.0 610.0,495.0");
  });
});
