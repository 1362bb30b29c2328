/**
 * The addrbook client: `deno task client` (see {@linkcode USAGE}), and the
 * library it is built on, exported here for programs that query a server.
 *
 * ```ts
 * import { Client } from "./client.ts";
 *
 * const client = await Client.connect({ hosts: "127.0.0.1:8080,127.0.0.1:8081" });
 * try {
 *   const reply = await client.lookup("ada@example.com");
 *   console.log(reply.status, reply.text); // 0 "Ada Lovelace"
 *   for await (const each of client.lookupMany(["ada@example.com", "bob@example.com"])) {
 *     console.log(each.text);
 *   }
 * } finally {
 *   client.close();
 * }
 * ```
 *
 * The pieces: `client/connection.ts` (one connection, pipelined),
 * `client/failover.ts` (the {@linkcode Client}: several hosts, reconnects,
 * resends), `client/hosts.ts` (host lists) and `client/cli.ts` (the command line).
 *
 * @module
 */

import { main } from "./client/cli.ts";

export {
  type CliOptions,
  type EnvLookup,
  EXIT_ERROR,
  EXIT_NOT_FOUND,
  EXIT_OK,
  main,
  parseClientArgs,
  USAGE,
} from "./client/cli.ts";
export {
  ClientError,
  type ClientErrorCode,
  Connection,
  type ConnectionOptions,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WINDOW,
  type Endpoint,
} from "./client/connection.ts";
export {
  Client,
  type ClientOptions,
  DEFAULT_HOSTNAME,
  DEFAULT_PORT,
  DEFAULT_ROUNDS,
} from "./client/failover.ts";
export { parseHostList } from "./client/hosts.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
