/**
 * The one error type users see. Its message is a single line that names the file
 * (when there is one) and what is wrong with it; the CLI prints it and exits with 2.
 */
export class GoodnetError extends Error {
  readonly file?: string;

  constructor(message: string, file?: string, options?: { cause?: unknown }) {
    super(file ? `${file}: ${message}` : message, options);
    this.name = 'GoodnetError';
    this.file = file;
  }
}

/** Exit code for bad input (usage errors, unreadable or invalid files). */
export const EXIT_BAD_INPUT = 2;

/** Collapse any message to one line so errors stay greppable and tidy. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
