/**
 * The addrbook server: serves an address book over TCP (or TLS) with the
 * protocol in PROTOCOL.md. This is its entry point (`deno task server`),
 * which runs server/main.ts's `main`; the parts live in the `server_*.ts`
 * modules, and the in-process API is re-exported here:
 *
 * - server/cli.ts: the command line and usage text;
 * - server/start.ts: {@linkcode startServer}, the in-process start API;
 * - server/threads.ts: the serving threads' supervision;
 * - server/listen.ts: opening the listening socket;
 * - server/http.ts: `/metrics`, `/healthz`, `/readyz`;
 * - server/signals.ts: SIGHUP, SIGINT, SIGTERM;
 * - server/tls_files.ts: reading, checking and reloading the TLS files;
 * - server/watch.ts: `--watch` (the book and the TLS files).
 *
 * Run it with `deno task server --help`, or start one in-process:
 *
 * ```ts
 * import { startServer } from "./server.ts";
 * import { loadBook } from "./book/load.ts";
 *
 * const { book } = await loadBook("data/addressbook.csv");
 * const server = await startServer({ book, port: 0 });
 * console.log(server.addr.port);
 * await server.close();
 * ```
 *
 * @module
 */

import { main } from "./server/main.ts";

export { type CliOptions, DEFAULT_DATA_PATH, parseServerArgs, USAGE } from "./server/cli.ts";
export { StartError } from "./server/error.ts";
export { type PortSharing } from "./server/listen.ts";
export { type TlsFiles } from "./transport/tls_context.ts";
export { type ServerHandle, type ServerOptions, startServer } from "./server/start.ts";
export type { IoKind } from "./server/worker_messages.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
