export interface Series {
  readonly label: string;
  readonly values: readonly number[];
}

export interface PlotOptions {
  readonly title?: string;
  /**
   * Label of the series the others are compared with. When given (and there are at least two
   * series), a second panel shows each series minus this one, step by step.
   */
  readonly reference?: string;
  readonly width?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
// Curves of precisions that agree lie on top of each other: dashes keep each one visible.
const DASHES = ["", "8 4", "2 3", "12 3 2 3", "4 4", "1 2"];
const MARGIN = { left: 80, right: 190, top: 40, bottom: 50 };

/**
 * Moving average over the last `window` points, so per-step noise does not hide the trend. Steps
 * whose loss is not finite (a 16-mixed step the scaler skipped) are left out of the mean.
 */
function smooth(values: readonly number[], window: number): number[] {
  return values.map((_, i) => {
    const finite = values.slice(Math.max(0, i - window + 1), i + 1).filter(Number.isFinite);
    return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : Number.NaN;
  });
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const label = (v: number) => String(Number(v.toPrecision(2)));

interface Axis {
  /** Pixel row of value v, or null where v cannot be drawn (not finite, or not positive on a log axis). */
  readonly y: (v: number) => number | null;
  readonly ticks: readonly number[];
}

function logAxis(values: readonly number[], top: number, height: number): Axis {
  const shown = values.filter((v) => v > 0 && Number.isFinite(v));
  const lo = Math.log10(Math.min(...shown));
  const hi = Math.log10(Math.max(...shown));
  const span = hi - lo || 1;
  return {
    y: (v) => (v > 0 && Number.isFinite(v) ? top + height - ((Math.log10(v) - lo) / span) * height : null),
    ticks: Array.from({ length: 6 }, (_, k) => 10 ** (lo + (k / 5) * (hi - lo))),
  };
}

/** A linear axis symmetric around zero, so the sign of a difference reads at a glance. */
function symmetricAxis(values: readonly number[], top: number, height: number): Axis {
  const bound = Math.max(...values.filter(Number.isFinite).map(Math.abs), 0) || 1e-6;
  return {
    y: (v) => (Number.isFinite(v) ? top + height / 2 - (v / bound) * (height / 2) : null),
    ticks: [-1, -0.5, 0, 0.5, 1].map((k) => k * bound),
  };
}

interface Panel {
  readonly top: number;
  readonly height: number;
  readonly axis: Axis;
  readonly yTitle: string;
}

/** Frame, y grid and tick labels, x ticks and the y-axis title of one panel. */
function drawPanel(parts: string[], p: Panel, width: number, xMax: number): (i: number) => number {
  const w = width - MARGIN.left - MARGIN.right;
  const x = (i: number) => MARGIN.left + (i / xMax) * w;
  const bottom = p.top + p.height;
  parts.push(
    `<line x1="${MARGIN.left}" y1="${bottom}" x2="${MARGIN.left + w}" y2="${bottom}" stroke="black"/>`,
    `<line x1="${MARGIN.left}" y1="${p.top}" x2="${MARGIN.left}" y2="${bottom}" stroke="black"/>`,
    `<text transform="translate(18 ${p.top + p.height / 2}) rotate(-90)" text-anchor="middle">${esc(p.yTitle)}</text>`,
  );
  for (const v of p.axis.ticks) {
    const y = p.axis.y(v)!;
    const stroke = v === 0 ? "#888" : "#ddd";
    parts.push(
      `<line x1="${MARGIN.left - 5}" y1="${y}" x2="${MARGIN.left + w}" y2="${y}" stroke="${stroke}"/><text x="${MARGIN.left - 8}" y="${y + 4}" text-anchor="end">${label(v)}</text>`,
    );
  }
  for (let k = 0; k <= 5; k++) {
    const i = Math.round((k / 5) * xMax);
    parts.push(
      `<line x1="${x(i)}" y1="${bottom}" x2="${x(i)}" y2="${bottom + 5}" stroke="black"/><text x="${x(i)}" y="${bottom + 18}" text-anchor="middle">${i}</text>`,
    );
  }
  return x;
}

function polyline(values: readonly number[], x: (i: number) => number, axis: Axis, color: string, dash: string): string {
  const points = values.flatMap((v, i) => {
    const y = axis.y(v);
    return y === null ? [] : [`${x(i).toFixed(1)},${y.toFixed(1)}`];
  });
  return `<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} points="${points.join(" ")}"/>`;
}

/**
 * Loss curves of several runs as an SVG: the smoothed losses on a log scale, and, with a
 * `reference`, a second panel of each run's smoothed loss minus the reference's at the same step
 * (where curves that lie on top of each other in the first panel come apart).
 */
export function lossCurvesSvg(series: readonly Series[], options: PlotOptions = {}): string {
  const { title = "Training loss by precision", width = 800 } = options;
  const window = Math.max(1, Math.round(Math.max(...series.map((s) => s.values.length)) / 50));
  const curves = series.map((s) => ({ label: s.label, values: smooth(s.values, window) }));
  const reference = curves.find((c) => c.label === options.reference);
  const differences =
    reference && curves.length > 1 ? curves.map((c) => ({ label: c.label, values: c.values.map((v, i) => v - (reference.values[i] ?? Number.NaN)) })) : null;
  const lossHeight = differences ? 340 : 390;
  const diffTop = MARGIN.top + lossHeight + 60;
  const diffHeight = 220;
  const height = differences ? diffTop + diffHeight + MARGIN.bottom : MARGIN.top + lossHeight + MARGIN.bottom;
  const xMax = Math.max(...curves.map((c) => c.values.length - 1), 1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${MARGIN.left + (width - MARGIN.left - MARGIN.right) / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`,
  ];
  const lossAxis = logAxis(
    curves.flatMap((c) => c.values),
    MARGIN.top,
    lossHeight,
  );
  const x = drawPanel(parts, { top: MARGIN.top, height: lossHeight, axis: lossAxis, yTitle: `loss (log scale, ${window}-step mean)` }, width, xMax);
  const style = (s: number) => {
    const dash = DASHES[s % DASHES.length] ? ` stroke-dasharray="${DASHES[s % DASHES.length]}"` : "";
    return { color: COLORS[s % COLORS.length]!, dash };
  };
  curves.forEach((c, s) => {
    const { color, dash } = style(s);
    parts.push(polyline(c.values, x, lossAxis, color, dash));
    const ly = MARGIN.top + 10 + s * 20;
    const lx = width - MARGIN.right + 15;
    parts.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 25}" y2="${ly}" stroke="${color}" stroke-width="3"${dash}/><text x="${lx + 31}" y="${ly + 4}">${esc(c.label)}</text>`,
    );
  });
  if (differences && reference) {
    const diffAxis = symmetricAxis(
      differences.flatMap((d) => d.values),
      diffTop,
      diffHeight,
    );
    parts.push(
      `<text x="${MARGIN.left + (width - MARGIN.left - MARGIN.right) / 2}" y="${diffTop - 12}" text-anchor="middle" font-size="14">loss minus ${esc(reference.label)} loss, step by step</text>`,
    );
    drawPanel(parts, { top: diffTop, height: diffHeight, axis: diffAxis, yTitle: "difference (same mean)" }, width, xMax);
    differences.forEach((d, s) => {
      const { color, dash } = style(s);
      parts.push(polyline(d.values, x, diffAxis, color, dash));
    });
  }
  parts.push(`<text x="${MARGIN.left + (width - MARGIN.left - MARGIN.right) / 2}" y="${height - 12}" text-anchor="middle">optimizer step</text>`);
  parts.push("</svg>");
  return parts.join("\n");
}
