/**
 * A minimal epoll loop around {@linkcode TlsConnection}, for the TLS
 * engine's tests and its benchmark (bench/tls_bench.ts): it accepts on a
 * common/libc.ts listening socket, drives each connection's handshake, reads and
 * writes by readiness, and answers every query frame with a FOUND reply
 * whose text is the query's email: an echo in the addrbook protocol, which
 * the project's clients and `qrload` both understand.
 *
 * It is the smallest faithful model of what io/epoll.ts does with
 * TLS: the wait for events is injected, so the tests run it inside their
 * own process (epoll_wait as a non-blocking FFI call, a promise, leaving
 * the thread to the test's clients) and the benchmark in a process of its
 * own (the plain blocking call, as the real loop does).
 *
 * Not a server: no limits, no timeouts, no book.
 *
 * Run as a program, it serves in a process of its own until killed, with
 * the blocking wait, and prints `listening on 127.0.0.1:PORT` on stderr
 * (and, with `--report-rss-every N`, `closed C rss BYTES` after every N
 * closed connections):
 *
 * ```sh
 * deno run --allow-read --allow-ffi testing/tls_test_server.ts --cert server.crt --key server.key \
 *   [--client-ca ca.crt] [--port 0] [--report-rss-every N]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  EAGAIN,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLIN,
  EPOLLOUT,
  type Libc,
  listenTcp,
  openLibc,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
} from "../common/libc.ts";
import { openOpenSsl, type OpenSsl } from "../transport/openssl.ts";
import {
  encodeReplyBytes,
  FrameDecoder,
  MAX_QUERY_BYTES,
  STATUS_FOUND,
  TYPE_QUERY,
} from "../protocol.ts";
import { TlsContext } from "../transport/tls_context.ts";
import { describeError } from "../common/errors.ts";
import { parsePort, parseWholeNumber } from "../common/cli_args.ts";
import type { TlsFailure } from "../session/handshake.ts";
import { TlsConnection } from "../transport/tls_connection.ts";

/** This module's path, to run it as a program: `deno run ... TLS_TEST_SERVER_PROGRAM --cert ...`. */
export const TLS_TEST_SERVER_PROGRAM: string = import.meta.filename!;

/** epoll_wait, blocking (a number) or run on another thread (a promise). */
export type EventWait = (
  epollFd: number,
  events: Uint8Array,
  maxEvents: number,
  timeoutMs: number,
) => number | Promise<number>;

/** How the loop is built. */
export interface TlsTestServerOptions {
  /** The loaded OpenSSL. */
  openssl: OpenSsl;
  /** The loaded libc. */
  libc: Libc;
  /** The context new connections are made with (the server frees it when replaced or closed). */
  context: TlsContext;
  /** How to wait for events. */
  wait: EventWait;
  /** The port to listen on, 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** The read buffer's size: a small one leaves decrypted bytes waiting inside OpenSSL. */
  readSize?: number;
  /**
   * Write no reply until the client has ended its data (close_notify or
   * TCP end), as a session does for a client that half-closes while its
   * replies are still on their way.
   */
  holdRepliesUntilClosed?: boolean;
  /** Called after each connection is closed and freed, with how many have been so far. */
  onClosed?: (closed: number) => void;
}

/** Handshakes counted by result, as the server's metrics will. */
export interface HandshakeCounts {
  /** Completed. */
  ok: number;
  /** Failed for any reason but the client certificate. */
  failed: number;
  /** The client sent no certificate, or one that did not verify. */
  client_cert_refused: number;
}

const MAX_EVENTS = 64;
const WAIT_MS = 20;
/** Reads per readiness event at most, so one busy connection cannot starve the others. */
const READS_PER_EVENT = 16;
const ACCEPTS_PER_EVENT = 256;

class Peer {
  readonly tls: TlsConnection;
  readonly decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  handshaking = true;
  /** Reply bytes not yet taken by SSL_write. */
  output: Uint8Array = new Uint8Array(0);
  /** The client ended its data: write what is owed, then close. */
  readClosed = false;
  events = EPOLLIN;
  constructor(tls: TlsConnection) {
    this.tls = tls;
  }
}

/** The loop, its listening socket, and what it saw. */
export class TlsTestServer {
  /** The port it listens on. */
  readonly port: number;
  /** Handshakes by result. */
  readonly handshakes: HandshakeCounts = { ok: 0, failed: 0, client_cert_refused: 0 };
  /** Every failure, in order. */
  readonly failures: TlsFailure[] = [];
  /** The client certificate subject of each completed handshake, in order. */
  readonly subjects: (string | undefined)[] = [];
  /** The protocol version of each completed handshake, in order. */
  readonly versions: string[] = [];
  /** Completes when the loop has stopped and every descriptor is closed. */
  readonly done: Promise<void>;
  readonly #options: TlsTestServerOptions;
  readonly #libc: Libc;
  readonly #listenFd: number;
  readonly #epollFd: number;
  readonly #peers = new Map<number, Peer>();
  /** Connections with decrypted bytes inside OpenSSL, which no epoll event will announce. */
  readonly #readAgain = new Set<Peer>();
  readonly #events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
  readonly #eventView = new DataView(this.#events.buffer);
  readonly #eventOne = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #input: Uint8Array;
  #context: TlsContext;
  #stopped = false;
  #closed = 0;

  /**
   * Listens on 127.0.0.1 and starts the loop.
   *
   * @throws {SocketError} when the port cannot be had.
   */
  constructor(options: TlsTestServerOptions) {
    this.#options = options;
    this.#libc = options.libc;
    this.#context = options.context;
    this.#input = new Uint8Array(options.readSize ?? 16384);
    const listener = listenTcp(this.#libc, "127.0.0.1", options.port ?? 0, false)!;
    this.#listenFd = listener.fd;
    this.port = listener.port;
    this.#epollFd = this.#libc.calls.epoll_create1(SOCK_CLOEXEC);
    this.#control(EPOLL_CTL_ADD, this.#listenFd, EPOLLIN);
    this.done = this.#run();
  }

  /** Connections open now. */
  get open(): number {
    return this.#peers.size;
  }

  /** New connections use `context` from now on; the old one is freed (open connections keep it). */
  setContext(context: TlsContext): void {
    this.#context.free();
    this.#context = context;
  }

  /** Stops the loop, closes every connection and the listener, and frees the context. */
  async close(): Promise<void> {
    this.#stopped = true;
    await this.done;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopped) {
        // Do not sleep while some connection has bytes to read that only OpenSSL knows of.
        const timeout = this.#readAgain.size > 0 ? 0 : WAIT_MS;
        const ready = await this.#options.wait(this.#epollFd, this.#events, MAX_EVENTS, timeout);
        for (let i = 0; i < ready; i++) {
          const fd = this.#eventView.getInt32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET, true);
          if (fd === this.#listenFd) this.#acceptAll();
          else {
            const peer = this.#peers.get(fd);
            if (peer) this.#drive(peer);
          }
        }
        for (const peer of [...this.#readAgain]) {
          this.#readAgain.delete(peer);
          if (this.#peers.get(peer.tls.fd) === peer) this.#drive(peer);
        }
      }
    } finally {
      for (const peer of [...this.#peers.values()]) this.#closePeer(peer);
      this.#libc.calls.close(this.#listenFd);
      this.#libc.calls.close(this.#epollFd);
      this.#context.free();
    }
  }

  #acceptAll(): void {
    const { calls } = this.#libc;
    for (let i = 0; i < ACCEPTS_PER_EVENT; i++) {
      const fd = calls.accept4(this.#listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (this.#libc.errno() !== EAGAIN) {
          throw new Error(`accept4 failed: errno ${this.#libc.errno()}.`);
        }
        return;
      }
      const peer = new Peer(
        TlsConnection.accept(this.#options.openssl, this.#libc, this.#context, fd),
      );
      this.#peers.set(fd, peer);
      this.#control(EPOLL_CTL_ADD, fd, EPOLLIN);
      // The client spoke first (ClientHello): it may be here already.
      this.#drive(peer);
    }
  }

  /** Does everything the connection allows now, then waits for what it asked for. */
  #drive(peer: Peer): void {
    if (peer.handshaking) {
      const step = peer.tls.handshake();
      if (step === "failed") return this.#fail(peer);
      if (step !== "done") return this.#await(peer, step);
      peer.handshaking = false;
      this.handshakes.ok++;
      this.subjects.push(peer.tls.peerSubject());
      this.versions.push(peer.tls.version);
    }
    const holding = this.#options.holdRepliesUntilClosed === true;
    if (!holding || peer.readClosed) {
      if (!this.#flush(peer)) return;
    }
    if (peer.readClosed) return this.#closePeer(peer, true);
    for (let i = 0; i < READS_PER_EVENT; i++) {
      const got = peer.tls.read(this.#input);
      if (got === "closed") {
        // TLS allows writing after the client's close_notify: answer what it sent first.
        peer.readClosed = true;
        if (this.#flush(peer)) this.#closePeer(peer, true);
        return;
      }
      if (got === "failed") return this.#fail(peer);
      if (typeof got === "string") return this.#await(peer, got);
      try {
        peer.output = concatBytes([peer.output, echoReplies(peer.decoder, this.#input, got)]);
      } catch {
        return this.#closePeer(peer); // not a query frame: a test server need not say why
      }
      if (!holding && !this.#flush(peer)) return;
      // Bytes OpenSSL decrypted beyond the buffer are not the kernel's: epoll would not wake us.
      if (!peer.tls.hasPending()) return this.#await(peer, "want-read");
    }
    // Out of turns with bytes still inside OpenSSL: come back after the other connections.
    this.#readAgain.add(peer);
    this.#await(peer, "want-read");
  }

  /** Writes what is waiting; false when the connection must wait (or closed). */
  #flush(peer: Peer): boolean {
    while (peer.output.length > 0) {
      const wrote = peer.tls.write(peer.output, peer.output.length);
      if (wrote === "failed") {
        this.#fail(peer);
        return false;
      }
      if (typeof wrote === "string") {
        this.#await(peer, wrote);
        return false;
      }
      peer.output = peer.output.subarray(wrote);
    }
    return true;
  }

  #await(peer: Peer, want: "want-read" | "want-write"): void {
    const events = want === "want-read" ? EPOLLIN : EPOLLOUT;
    if (events !== peer.events) {
      peer.events = events;
      this.#control(EPOLL_CTL_MOD, peer.tls.fd, events);
    }
  }

  #fail(peer: Peer): void {
    const failure = peer.tls.failure!;
    if (peer.handshaking) this.handshakes[failure.kind]++;
    this.failures.push(failure);
    this.#closePeer(peer);
  }

  #closePeer(peer: Peer, graceful = false): void {
    if (graceful) peer.tls.shutdown();
    peer.tls.free();
    this.#peers.delete(peer.tls.fd);
    this.#libc.calls.close(peer.tls.fd);
    this.#options.onClosed?.(++this.#closed);
  }

  #control(operation: number, fd: number, events: number): void {
    const view = new DataView(this.#eventOne.buffer);
    view.setUint32(0, events, true);
    view.setInt32(EPOLL_DATA_OFFSET, fd, true);
    if (this.#libc.calls.epoll_ctl(this.#epollFd, operation, fd, this.#eventOne) !== 0) {
      throw new Error(`epoll_ctl failed for fd ${fd}: errno ${this.#libc.errno()}.`);
    }
  }
}

/**
 * Feeds `length` bytes of `chunk` to a query decoder and returns a FOUND
 * reply for each complete query, its text the query's email.
 *
 * @throws {ProtocolError} on a frame that is not a query or is too long.
 */
export function echoReplies(decoder: FrameDecoder, chunk: Uint8Array, length: number): Uint8Array {
  decoder.push(chunk, length);
  const replies: Uint8Array[] = [];
  for (let email = decoder.next(); email !== null; email = decoder.next()) {
    replies.push(encodeReplyBytes(STATUS_FOUND, email));
  }
  return concatBytes(replies);
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const nonEmpty = parts.filter((part) => part.length > 0);
  if (nonEmpty.length === 1) return nonEmpty[0];
  parts = nonEmpty;
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Serves until killed: the program described in the module comment. */
async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      cert: { type: "string" },
      key: { type: "string" },
      "client-ca": { type: "string" },
      port: { type: "string", default: "0" },
      "report-rss-every": { type: "string", default: "0" },
    },
  });
  const reportEvery = parseWholeNumber("--report-rss-every", values["report-rss-every"], 0, 1e9);
  if (values.cert === undefined || values.key === undefined) {
    throw new TypeError("Both --cert and --key are required.");
  }
  const openssl = openOpenSsl();
  const libc = openLibc();
  if (!openssl || !libc) throw new Error("OpenSSL 3 and libc need --allow-ffi on Linux.");
  const clientCa = values["client-ca"];
  const context = TlsContext.create(openssl, {
    cert: await Deno.readTextFile(values.cert),
    key: await Deno.readTextFile(values.key),
    clientCa: clientCa === undefined ? undefined : await Deno.readTextFile(clientCa),
  });
  const server = new TlsTestServer({
    openssl,
    libc,
    context,
    port: parsePort("--port", values.port),
    wait: (epollFd, events, maxEvents, timeoutMs) =>
      libc.calls.epoll_wait(epollFd, events, maxEvents, timeoutMs),
    // The process's own figure: another process may not read /proc/PID/status under Deno.
    onClosed: (closed) => {
      if (reportEvery > 0 && closed % reportEvery === 0) {
        console.error(`closed ${closed} rss ${Deno.memoryUsage().rss}`);
      }
    },
  });
  console.error(`listening on 127.0.0.1:${server.port}`);
  await server.done;
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`tls_test_server: ${describeError(error)}`);
    Deno.exit(1);
  }
}
