// Markdown tables and self-made SVG bar charts for a benchmark run.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1'];

/**
 * Horizontal grouped bar chart. groups: [{label, bars: [{series, value}]}];
 * series share colours across groups; null values are drawn as "n/a".
 */
export function barChart({ title, unit, groups, note = '' }) {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const color = (s) => PALETTE[series.indexOf(s) % PALETTE.length];
  const max = Math.max(1e-9, ...groups.flatMap((g) => g.bars.map((b) => b.value ?? 0)));
  const labelW = 230, plotW = 470, barH = 16, gap = 4, groupGap = 14, top = 52, legendH = 20 * Math.ceil(series.length / 2);
  let y = top;
  const parts = [];
  for (const g of groups) {
    const gh = g.bars.length * (barH + gap);
    parts.push(`<text x="${labelW - 8}" y="${y + gh / 2 + 4}" text-anchor="end" font-size="12">${esc(g.label)}</text>`);
    for (const b of g.bars) {
      const w = b.value === null || b.value === undefined ? 0 : Math.max(1, (b.value / max) * plotW);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color(b.series)}"><title>${esc(b.series)}: ${esc(fmt(b.value))} ${esc(unit)}</title></rect>`);
      parts.push(`<text x="${labelW + w + 4}" y="${y + barH - 4}" font-size="11">${b.value === null || b.value === undefined ? 'n/a' : esc(fmt(b.value))}</text>`);
      y += barH + gap;
    }
    y += groupGap;
  }
  const legendY = y + 4;
  series.forEach((s, i) => {
    const lx = 20 + (i % 2) * 360, ly = legendY + Math.floor(i / 2) * 20;
    parts.push(`<rect x="${lx}" y="${ly}" width="12" height="12" fill="${color(s)}"/><text x="${lx + 18}" y="${ly + 10}" font-size="12">${esc(s)}</text>`);
  });
  const h = legendY + legendH + (note ? 24 : 8);
  if (note) parts.push(`<text x="20" y="${h - 8}" font-size="11" fill="#555">${esc(note)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 90}" height="${h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="24" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="20" y="42" font-size="12" fill="#555">${esc(unit)}</text>
${parts.join('\n')}
</svg>
`;
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toPrecision(digits);
}

export function table(head, rows) {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** "3.2× faster" style ratio a/b (b the better when the ratio is > 1), or n/a. */
export function ratio(a, b) {
  if (!a || !b) return null;
  return a / b;
}

/** The next 1, 2, 4 or 5 × 10^n at or above v, so that axis ticks (v/4) are round. */
function niceCeil(v) {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 5, 8, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

/**
 * Scatter chart: series [{name, points: [[x, y], ...]}]. The y axis ends a
 * little above the 99th percentile of all points; points above it are drawn
 * on the top edge as open circles.
 */
export function scatterChart({ title, xLabel, yLabel, series, note = '' }) {
  const all = series.flatMap((s) => s.points);
  const ys = all.map((p) => p[1]).sort((a, b) => a - b);
  const yMax = niceCeil(Math.max(1e-9, (ys[Math.floor(ys.length * 0.99)] ?? 1) * 1.15));
  const xMax = niceCeil(Math.max(1, ...all.map((p) => p[0])));
  const L = 60, T = 50, W = 640, H = 300;
  const sx = (x) => L + (x / xMax) * W, sy = (y) => T + H - (Math.min(y, yMax) / yMax) * H;
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    parts.push(`<line x1="${L}" x2="${L + W}" y1="${sy(y)}" y2="${sy(y)}" stroke="#ddd"/><text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="11">${esc(fmt(y))}</text>`);
    const x = (xMax * i) / 4;
    parts.push(`<text x="${sx(x)}" y="${T + H + 16}" text-anchor="middle" font-size="11">${Math.round(x)}</text>`);
  }
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    for (const [x, y] of s.points) {
      parts.push(y > yMax
        ? `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="none" stroke="${c}"/>`
        : `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2" fill="${c}" fill-opacity="0.6"/>`);
    }
    const lx = L + (i % 2) * 330, ly = T + H + 34 + Math.floor(i / 2) * 18;
    parts.push(`<rect x="${lx}" y="${ly}" width="12" height="12" fill="${c}"/><text x="${lx + 18}" y="${ly + 10}" font-size="12">${esc(s.name)}</text>`);
  });
  const h = T + H + 40 + Math.ceil(series.length / 2) * 18 + (note ? 18 : 0);
  if (note) parts.push(`<text x="20" y="${h - 6}" font-size="11" fill="#555">${esc(note)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${L + W + 30}" height="${h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="22" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="20" y="40" font-size="12" fill="#555">${esc(yLabel)}; x: ${esc(xLabel)}</text>
<line x1="${L}" x2="${L}" y1="${T}" y2="${T + H}" stroke="#888"/><line x1="${L}" x2="${L + W}" y1="${T + H}" y2="${T + H}" stroke="#888"/>
${parts.join('\n')}
</svg>
`;
}
