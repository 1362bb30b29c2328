/**
 * A server in the test's own process, started through `startServer` on a
 * free port of {@linkcode LOOPBACK} with its log captured in memory: the
 * small test book (`PEOPLE`, books.ts) for the server's tests, the larger
 * {@linkcode clientTestBook} for the client's.
 *
 * ```ts ignore
 * import { withTestClient } from "./in_process_server.ts";
 *
 * await withTestClient({}, async (client, { lines }) => {
 *   await client.query("ada@example.com"); // { status: 0, text: "Ada Lovelace" }
 * });
 * ```
 *
 * @module
 */

import { Logger, type LogLevel } from "../common/log.ts";
import { type ServerHandle, type ServerOptions, startServer } from "../server/start.ts";
import { clientTestBook, makeBook } from "./books.ts";
import { LOOPBACK } from "./loopback.ts";
import { assertNoPersonalData } from "./personal_data.ts";
import { type WireClient, withWireClient } from "./wire_client.ts";

/** A running in-process server, its port, and the log lines it wrote. */
export interface TestServer {
  /** The server's handle. */
  server: ServerHandle;
  /** The port it listens on. */
  port: number;
  /** Every line it logged, in order. */
  lines: string[];
}

/** Options for {@linkcode startTestServer}: server options, all optional, plus the log level. */
export type TestServerOptions = Partial<ServerOptions> & { logLevel?: LogLevel };

/**
 * Starts a server on {@linkcode LOOPBACK}, on a free port, serving the
 * small test book (`PEOPLE`) unless told otherwise, with its log captured in memory.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const lines: string[] = [];
  const { logLevel, ...rest } = options;
  const server = await startServer({
    book: makeBook(),
    hostname: LOOPBACK,
    port: 0,
    log: new Logger({ level: logLevel ?? "info", write: (line) => lines.push(line) }),
    ...rest,
  });
  return { server, port: server.addr.port, lines };
}

/**
 * Runs `body` against a fresh test server, closes the server however the
 * body ends, then checks the log holds no personal data (nor `extraNames`).
 */
export async function withTestServer(
  options: TestServerOptions,
  body: (test: TestServer) => Promise<void>,
  extraNames: string[] = [],
): Promise<void> {
  const test = await startTestServer(options);
  try {
    await body(test);
  } finally {
    await test.server.close();
  }
  assertNoPersonalData(test.lines, extraNames);
}

/**
 * {@linkcode withTestServer} with one {@linkcode WireClient} connected to the
 * server for `body`; the client is closed before the server.
 */
export function withTestClient(
  options: TestServerOptions,
  body: (client: WireClient<Deno.TcpConn>, test: TestServer) => Promise<void>,
  extraNames: string[] = [],
): Promise<void> {
  return withTestServer(
    options,
    (test) => withWireClient(test.port, (client) => body(client, test)),
    extraNames,
  );
}

/** Runs `body` against an in-process server of {@linkcode clientTestBook} on a free port, its log quiet. */
export async function withClientTestServer(
  body: (port: number, server: ServerHandle) => Promise<void>,
  options: Partial<ServerOptions> = {},
): Promise<void> {
  const server = await startServer({
    book: clientTestBook(),
    port: 0,
    hostname: LOOPBACK,
    log: new Logger({ write: () => {} }),
    ...options,
  });
  try {
    await body(server.addr.port, server);
  } finally {
    await server.close();
  }
}
