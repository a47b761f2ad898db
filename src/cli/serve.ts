import { Command } from 'commander';
import { serveWeb } from '../web/server.js';
import { parseInteger } from './common.js';

export function serveCommand(): Command {
  return new Command('serve')
    .summary('serve the browser page (the whole defense in a web page) on 127.0.0.1')
    .description('Serve goodnet\'s web page from 127.0.0.1 only. The page runs evaluation, the pruning sweep and the GoodNet tables ' +
      'in the browser, with the same library code as this command line; files dropped on it never leave the machine. ' +
      'The page is plain static files (dist/web); any static server does, this one adds a strict Content-Security-Policy.')
    .option('-p, --port <n>', 'port (0: any free port)', parseInteger('--port', 0, 65535), 8080)
    .action(async (o: { port: number }) => {
      const s = await serveWeb({ port: o.port });
      console.log(`goodnet: serving the web page at ${s.url} (Ctrl-C stops)`);
    });
}
