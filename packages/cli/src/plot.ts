export interface Series {
  readonly label: string;
  readonly values: readonly number[];
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
// Curves of precisions that agree lie on top of each other: dashes keep each one visible.
const DASHES = ["", "8 4", "2 3", "12 3 2 3", "4 4", "1 2"];

/** Moving average over `window` points, so per-step noise does not hide the trend. */
function smooth(values: readonly number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  values.forEach((v, i) => {
    sum += v;
    if (i >= window) sum -= values[i - window]!;
    out.push(sum / Math.min(i + 1, window));
  });
  return out;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/** Loss curves of several runs on one SVG plot (log-scale y), with axes, ticks and a legend. */
export function lossCurvesSvg(series: readonly Series[], title = "Training loss by precision", width = 800, height = 480): string {
  const m = { left: 70, right: 190, top: 40, bottom: 50 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const window = Math.max(1, Math.round(Math.max(...series.map((s) => s.values.length)) / 50));
  const curves = series.map((s) => ({ label: s.label, values: smooth(s.values, window) }));
  const all = curves.flatMap((c) => c.values).filter((v) => v > 0 && Number.isFinite(v));
  const yMin = Math.log10(Math.min(...all));
  const yMax = Math.log10(Math.max(...all));
  const xMax = Math.max(...curves.map((c) => c.values.length - 1), 1);
  const x = (i: number) => m.left + (i / xMax) * w;
  const y = (v: number) => m.top + h - ((Math.log10(v) - yMin) / (yMax - yMin || 1)) * h;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${m.left + w / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`,
    `<line x1="${m.left}" y1="${m.top + h}" x2="${m.left + w}" y2="${m.top + h}" stroke="black"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + h}" stroke="black"/>`,
    `<text x="${m.left + w / 2}" y="${height - 12}" text-anchor="middle">optimizer step</text>`,
    `<text transform="translate(18 ${m.top + h / 2}) rotate(-90)" text-anchor="middle">loss (log scale, ${window}-step mean)</text>`,
  ];
  for (let k = 0; k <= 5; k++) {
    const i = Math.round((k / 5) * xMax);
    parts.push(`<line x1="${x(i)}" y1="${m.top + h}" x2="${x(i)}" y2="${m.top + h + 5}" stroke="black"/><text x="${x(i)}" y="${m.top + h + 18}" text-anchor="middle">${i}</text>`);
    const v = 10 ** (yMin + (k / 5) * (yMax - yMin));
    parts.push(
      `<line x1="${m.left - 5}" y1="${y(v)}" x2="${m.left + w}" y2="${y(v)}" stroke="#ddd"/><text x="${m.left - 8}" y="${y(v) + 4}" text-anchor="end">${v.toPrecision(2)}</text>`,
    );
  }
  curves.forEach((c, s) => {
    const color = COLORS[s % COLORS.length]!;
    const points = c.values.map((v, i) => (v > 0 && Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : null)).filter(Boolean);
    const dash = DASHES[s % DASHES.length] ? ` stroke-dasharray="${DASHES[s % DASHES.length]}"` : "";
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} points="${points.join(" ")}"/>`);
    const ly = m.top + 10 + s * 20;
    parts.push(`<line x1="${m.left + w + 15}" y1="${ly}" x2="${m.left + w + 40}" y2="${ly}" stroke="${color}" stroke-width="3"${dash}/><text x="${m.left + w + 46}" y="${ly + 4}">${esc(c.label)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}
