/**
 * Progress on stderr: a redrawn bar on a terminal, nothing in between on a pipe or in CI
 * (final lines are still printed), so logs stay readable.
 */
const WIDTH = 24;

export class ProgressBar {
  private last = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly t0 = performance.now();

  constructor(private readonly label: string) {}

  update(done: number, total: number, suffix = ''): void {
    if (!this.tty) return;
    const now = performance.now();
    if (done < total && now - this.last < 100) return;
    this.last = now;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * WIDTH);
    const secs = (now - this.t0) / 1000;
    const eta = frac > 0 && frac < 1 ? ` eta ${Math.ceil((secs / frac) * (1 - frac))}s` : '';
    const bar = `${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}`;
    process.stderr.write(`\r\x1b[K${this.label} [${bar}] ${done}/${total}${eta}${suffix ? `  ${suffix}` : ''}`);
  }

  /** Replace the bar by a final line (printed on terminals and pipes alike). */
  finish(line?: string): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
    if (line) process.stderr.write(`${line}\n`);
  }
}

/** A progress callback for loops that only report counts. */
export function progress(label: string): (done: number, total: number) => void {
  const bar = new ProgressBar(label);
  return (done, total) => {
    bar.update(done, total);
    if (done >= total) bar.finish();
  };
}

/** onBatch for training loops: one bar per epoch showing running loss and accuracy; `done` ends it. */
export function epochBars(label: (epoch: number) => string, done?: (epoch: number) => string | undefined) {
  let bar: ProgressBar | undefined;
  return (epoch: number, n: number, total: number, loss: number, acc: number): void => {
    bar ??= new ProgressBar(label(epoch));
    bar.update(n, total, `loss ${loss.toFixed(4)} acc ${(acc * 100).toFixed(2)}%`);
    if (n >= total) {
      bar.finish(done?.(epoch));
      bar = undefined;
    }
  };
}
