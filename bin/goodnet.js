#!/usr/bin/env node
// Thin launcher: the CLI lives in src/cli (compiled to dist/ by `npm install`'s prepare step).
import { exitOnInterrupt } from '../dist/src/io/atomic.js';

// Ctrl-C / SIGTERM: remove partial outputs (temp files being written), exit 130 / 143.
// Installed before the CLI (and tfjs) is even loaded, so a signal at any moment exits so.
exitOnInterrupt();

// `goodnet ... | head` closes the pipe early; that is not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv);
