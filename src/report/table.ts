/** The text tables live in src/io/table.ts (defense and detect code write them too); re-exported for report code. */
export { markdownTable, percent, type Cell } from '../io/table.js';
