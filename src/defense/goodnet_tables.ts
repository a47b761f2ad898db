/**
 * The GoodNet tables as text: the reference paper's Tables 1 and 2 in Markdown, and every
 * row as CSV. Written by `goodnet prune` and shown by the report.
 */
import { markdownTable, percent } from '../io/table.js';
import type { GoodNetRow, PruneOrder } from './types.js';

const pct = (x: number, digits = 2) => percent(x, digits);

/** The rows of one order, by threshold. */
export function rowsFor(rows: GoodNetRow[], order: PruneOrder): GoodNetRow[] {
  return rows.filter((r) => r.order === order).sort((a, b) => a.threshold - b.threshold);
}

const MD_HEADERS = ['X', 'pruned', "B'_X accuracy", "B'_X ASR", 'G_X accuracy', 'G_X ASR', 'detection', 'false alarm'];

/** The paper's Table 1 (asc) / Table 2 (desc) as Markdown. */
export function markdownGoodNetTable(rows: GoodNetRow[], order: PruneOrder): string {
  return markdownTable(
    MD_HEADERS,
    rowsFor(rows, order).map((r) => [
      `${r.threshold}%`,
      pct(r.fractionPruned, 1),
      pct(r.repaired.accuracy),
      pct(r.repaired.asr),
      pct(r.goodnet.accuracy),
      pct(r.goodnet.asr),
      pct(r.goodnet.detectionRate),
      pct(r.goodnet.falseAlarmRate),
    ]),
  );
}

const CSV_HEADERS = [
  'order',
  'threshold',
  'fraction_pruned',
  'repaired_accuracy',
  'repaired_asr',
  'goodnet_accuracy',
  'goodnet_asr',
  'detection_rate',
  'false_alarm_rate',
];

function csvCell(v: string | number): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** All rows, full precision, rates in 0..1; header line first, '\n' line ends. */
export function goodnetCsv(rows: GoodNetRow[]): string {
  const lines = [CSV_HEADERS.join(',')];
  for (const r of rows) {
    lines.push(
      [r.order, r.threshold, r.fractionPruned, r.repaired.accuracy, r.repaired.asr, r.goodnet.accuracy, r.goodnet.asr, r.goodnet.detectionRate, r.goodnet.falseAlarmRate]
        .map(csvCell)
        .join(','),
    );
  }
  return lines.join('\n') + '\n';
}

