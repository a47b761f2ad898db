/** `node:fs/promises` for the web bundle (see fs.ts). */
import { promises } from './fs.js';

export const readFile = promises.readFile;
export const writeFile = promises.writeFile;
export default promises;
