/** Plain tables for the terminal: Markdown, so they paste straight into issues and READMEs. */

export type Cell = string | number;

/** Right-align numbers, left-align text; columns padded to their widest cell. */
export function markdownTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => String(c)));
  const isNum = (c: Cell | undefined) => typeof c === 'number' || /^-?[\d.]+%?$/.test(String(c));
  // A column is numeric when every cell is a number or a percentage ('-' marks a gap).
  const numeric = headers.map((_, j) => rows.some((r) => isNum(r[j])) && rows.every((r) => isNum(r[j]) || r[j] === '-'));
  const width = headers.map((h, j) => Math.max(3, h.length, ...text.map((r) => (r[j] ?? '').length)));
  const pad = (s: string, j: number) => (numeric[j] ? s.padStart(width[j]!) : s.padEnd(width[j]!));
  const line = (cells: string[]) => `| ${cells.map((c, j) => pad(c, j)).join(' | ')} |`;
  const rule = `|${width.map((w, j) => (numeric[j] ? `${'-'.repeat(w + 1)}:` : `:${'-'.repeat(w + 1)}`)).join('|')}|`;
  return [line(headers), rule, ...text.map(line)].join('\n');
}

/** 0.9876 -> "98.76%". */
export function percent(x: number, digits = 2): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : 'n/a';
}
