/**
 * Which way should OpenSSL meet the socket: `SSL_set_fd` (OpenSSL calls
 * read(2) and write(2) itself) or memory BIOs (the loop reads ciphertext
 * from the socket, hands it to OpenSSL with `BIO_write`, and takes
 * OpenSSL's output back with `BIO_read` to write it)? This measures the
 * server engine's cost per request and reply both ways, in one process,
 * over a socket pair, against an OpenSSL client driven in the same loop,
 * so that only the server side differs between the two runs.
 *
 * ```sh
 * deno run --allow-ffi --allow-read --allow-run --allow-write bench/tls_transport_bench.ts [ROUND_TRIPS [DESIGN]]
 * ```
 *
 * The result decides transport/tls_connection.ts's design (its module comment has
 * the numbers). A measurement, not a test.
 *
 * @module
 */

import { type Libc, openLibc, SOCK_NONBLOCK, SOCK_STREAM } from "../common/libc.ts";
import {
  openOpenSsl,
  type OpenSsl,
  SSL_CTRL_SET_READ_AHEAD,
  SSL_ERROR_WANT_READ,
  SSL_ERROR_WANT_WRITE,
} from "../transport/openssl.ts";
import { encodeQuery } from "../protocol.ts";
import { makeTestPki } from "../testing/pki.ts";
import { TlsContext } from "../transport/tls_context.ts";
import { TlsConnection } from "../transport/tls_connection.ts";
import { describeError } from "../common/errors.ts";

/** The local (Unix-domain) address family, for socketpair(2). */
const AF_UNIX = 1;
const DEFAULT_ROUND_TRIPS = 200_000;
const WARM_UP = 20_000;
const RUNS = 3;
const CIPHER_SIZE = 16384 + 512;

const EXTRA_SYMBOLS = {
  TLS_client_method: { parameters: [], result: "pointer" },
  SSL_set_connect_state: { parameters: ["pointer"], result: "void" },
  SSL_set_bio: { parameters: ["pointer", "pointer", "pointer"], result: "void" },
} as const;

/** The server side of one connection, as the loop sees it. */
interface ServerSide {
  handshake(): string;
  read(buffer: Uint8Array): number | string;
  write(bytes: Uint8Array, length: number): number | string;
  free(): void;
}

/** The memory-BIO design: the same calls as TlsConnection, with the socket I/O done here. */
class MemoryBioConnection implements ServerSide {
  readonly #openssl: OpenSsl;
  readonly #libc: Libc;
  readonly #fd: number;
  readonly #ssl: Deno.PointerObject;
  readonly #input: Deno.PointerObject;
  readonly #output: Deno.PointerObject;
  readonly #cipher = new Uint8Array(CIPHER_SIZE);

  constructor(openssl: OpenSsl, libc: Libc, extra: ExtraSymbols, context: TlsContext, fd: number) {
    this.#openssl = openssl;
    this.#libc = libc;
    this.#fd = fd;
    const { ssl, crypto } = openssl;
    this.#ssl = ssl.SSL_new(context.pointer)!;
    this.#input = crypto.BIO_new(crypto.BIO_s_mem())!;
    this.#output = crypto.BIO_new(crypto.BIO_s_mem())!;
    // The SSL takes both BIOs: SSL_free frees them.
    extra.SSL_set_bio(this.#ssl, this.#input, this.#output);
    ssl.SSL_set_accept_state(this.#ssl);
  }

  handshake(): string {
    this.#fill();
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_do_handshake(this.#ssl);
    this.#drain();
    return result === 1 ? "done" : this.#want(result);
  }

  read(buffer: Uint8Array): number | string {
    this.#fill();
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_read(this.#ssl, buffer, buffer.length);
    // A read can produce output too (a key update, an alert): always drain.
    this.#drain();
    return result > 0 ? result : this.#want(result);
  }

  write(bytes: Uint8Array, length: number): number | string {
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_write(this.#ssl, bytes, length);
    this.#drain();
    return result > 0 ? result : this.#want(result);
  }

  free(): void {
    this.#openssl.ssl.SSL_free(this.#ssl);
  }

  #fill(): void {
    const got = this.#libc.read(this.#fd, this.#cipher, this.#cipher.length);
    if (got > 0) this.#openssl.crypto.BIO_write(this.#input, this.#cipher, got);
  }

  #drain(): void {
    for (;;) {
      const got = this.#openssl.crypto.BIO_read(this.#output, this.#cipher, this.#cipher.length);
      if (got <= 0) return;
      // A socket pair's buffer takes these small writes whole.
      this.#libc.write(this.#fd, this.#cipher, got);
    }
  }

  #want(result: number): string {
    const error = this.#openssl.ssl.SSL_get_error(this.#ssl, result);
    if (error === SSL_ERROR_WANT_READ) return "want-read";
    if (error === SSL_ERROR_WANT_WRITE) return "want-write";
    throw new Error(`The TLS call failed: ${this.#openssl.takeError()?.text ?? error}.`);
  }
}

type ExtraSymbols = Deno.DynamicLibrary<typeof EXTRA_SYMBOLS>["symbols"];

/** A non-blocking OpenSSL client on one end of the pair, driven by hand. */
class Client {
  readonly ssl: Deno.PointerObject;
  readonly #openssl: OpenSsl;
  constructor(openssl: OpenSsl, extra: ExtraSymbols, context: Deno.PointerObject, fd: number) {
    this.#openssl = openssl;
    this.ssl = openssl.ssl.SSL_new(context)!;
    openssl.ssl.SSL_set_fd(this.ssl, fd);
    extra.SSL_set_connect_state(this.ssl);
  }
  handshake(): boolean {
    return this.#openssl.ssl.SSL_do_handshake(this.ssl) === 1;
  }
}

function socketPair(): [number, number] {
  const { socketpair } = Deno.dlopen("libc.so.6", {
    socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  }).symbols;
  const fds = new Int32Array(2);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, new Uint8Array(fds.buffer)) !== 0) {
    throw new Error("socketpair failed.");
  }
  return [fds[0], fds[1]];
}

/** Nanoseconds per request and reply through `server`, after the handshake. */
function measure(
  openssl: OpenSsl,
  client: Client,
  server: ServerSide,
  roundTrips: number,
): number {
  for (let i = 0; i < 1000; i++) {
    const serverDone = server.handshake() === "done";
    if (client.handshake() && serverDone) break;
  }
  const request = encodeQuery("ada@example.com");
  const reply = new Uint8Array(request.length + 1);
  const serverBuffer = new Uint8Array(16384);
  const clientBuffer = new Uint8Array(16384);
  const { ssl } = openssl;
  const once = () => {
    ssl.SSL_write(client.ssl, request, request.length);
    // The pair delivers at once, but the server's first reads may still meet a session ticket.
    let got: number | string = "want-read";
    for (let i = 0; i < 16 && typeof got !== "number"; i++) got = server.read(serverBuffer);
    if (typeof got !== "number") throw new Error(`The server read nothing: ${got}.`);
    if (server.write(reply, reply.length) !== reply.length) throw new Error("A short write.");
    let back = -1;
    for (let i = 0; i < 16 && back <= 0; i++) {
      back = ssl.SSL_read(client.ssl, clientBuffer, clientBuffer.length);
    }
    if (back <= 0) throw new Error("The client read nothing.");
  };
  for (let i = 0; i < WARM_UP; i++) once();
  const started = performance.now();
  for (let i = 0; i < roundTrips; i++) once();
  return ((performance.now() - started) * 1e6) / roundTrips;
}

async function main(args: string[]): Promise<void> {
  const roundTrips = args[0] === undefined ? DEFAULT_ROUND_TRIPS : Number(args[0]);
  if (!Number.isInteger(roundTrips) || roundTrips < 1) {
    throw new RangeError(`The round trips must be a whole number above 0, not "${args[0]}".`);
  }
  const openssl = openOpenSsl();
  const libc = openLibc();
  if (!openssl || !libc) throw new Error("OpenSSL 3 and libc need --allow-ffi on Linux.");
  const extra = Deno.dlopen("libssl.so.3", EXTRA_SYMBOLS).symbols;
  await using pki = await makeTestPki();
  const context = TlsContext.create(openssl, {
    cert: pki.server.certificate,
    key: pki.server.key,
  });
  // The engine's own setting is read-ahead on; this one measures what it saves.
  const oneRecordContext = TlsContext.create(openssl, {
    cert: pki.server.certificate,
    key: pki.server.key,
  });
  openssl.ssl.SSL_CTX_ctrl(oneRecordContext.pointer, SSL_CTRL_SET_READ_AHEAD, 0n, null);
  const clientContext = openssl.ssl.SSL_CTX_new(extra.TLS_client_method())!;
  const designs: [string, (fd: number) => ServerSide][] = [
    ["SSL_set_fd", (fd) => TlsConnection.accept(openssl, libc, context, fd)],
    [
      "SSL_set_fd, no read-ahead",
      (fd) => TlsConnection.accept(openssl, libc, oneRecordContext, fd),
    ],
    ["memory BIOs", (fd) => new MemoryBioConnection(openssl, libc, extra, context, fd)],
  ];
  const chosen = args[1] === undefined ? designs : designs.filter(([name]) => name === args[1]);
  if (chosen.length === 0) {
    throw new RangeError(
      `There is no design "${args[1]}": ${designs.map(([name]) => name).join(", ")}.`,
    );
  }
  const results = new Map<string, number[]>();
  // Interleaved runs, so that a slower moment of a shared machine hits both.
  for (let run = 0; run < RUNS; run++) {
    for (const [name, make] of chosen) {
      const [serverFd, clientFd] = socketPair();
      const server = make(serverFd);
      const client = new Client(openssl, extra, clientContext, clientFd);
      try {
        const ns = measure(openssl, client, server, roundTrips);
        results.set(name, [...(results.get(name) ?? []), ns]);
      } finally {
        server.free();
        openssl.ssl.SSL_free(client.ssl);
        libc.calls.close(serverFd);
        libc.calls.close(clientFd);
      }
    }
  }
  console.log(`${roundTrips} request/reply round trips per run, ${RUNS} runs, client included:`);
  for (const [name, runs] of results) {
    const sorted = [...runs].sort((a, b) => a - b);
    console.log(
      `${name.padEnd(26)} median ${
        (sorted[Math.floor(RUNS / 2)] / 1000).toFixed(2)
      } µs per round trip (runs: ${runs.map((ns) => (ns / 1000).toFixed(2)).join(", ")})`,
    );
  }
  context.free();
  oneRecordContext.free();
  openssl.ssl.SSL_CTX_free(clientContext);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`tls_transport_bench: ${describeError(error)}`);
    Deno.exit(1);
  }
}
