/**
 * TLS for the `Deno.listen` driver (io/deno.ts, `--io deno` and every
 * platform without the epoll loop): a `node:tls` listener, with or without
 * client certificates (`requestCert`, `rejectUnauthorized`, the client CA,
 * TLS 1.2 at least), whose sockets are wrapped as the few `Deno.Conn` calls
 * the driver makes (read, write, closeWrite, close, setNoDelay, remoteAddr:
 * io/deno.ts's `Stream`). node:tls does the handshake before it hands a
 * socket over: a completed one comes with its outcome
 * ({@linkcode NodeTlsConn.completedHandshake}, the certificate subject), which the
 * driver gives the session; a failed or timed-out one is reported through
 * {@linkcode NodeTlsOptions}, to session/handshake.ts, since no session
 * exists yet (that module says why).
 *
 * Why node:tls and not `Deno.listenTls`: `Deno.listenTls` cannot ask for a
 * client certificate, does not set TCP_NODELAY on what it accepts (and a
 * `Deno.TlsConn` cannot), so the handshake's last flight and the first
 * reply waited about 40 ms for a delayed ACK (BENCHMARKS.md "The stall
 * check"); it has no handshake deadline, and its certificate is fixed.
 * node:tls has `noDelay` from accept, `handshakeTimeout`, and
 * `setSecureContext` for rotation ({@linkcode NodeTlsListener.setFiles}).
 * Several threads share a port: node:net's `reusePort` works across Deno
 * workers (checked with real connections spread over two workers).
 *
 * What it lacks against the epoll loop: a refusal's reason is what node:tls
 * says (a certificate from another CA shows only as a reset), and its
 * handshake is the polyfill's, on rustls, not the system's OpenSSL. It
 * costs throughput: open connections get about 0.55 times the queries per
 * second they had under `Deno.listenTls` (BENCHMARKS.md "The stall
 * check"), while new ones answer at once. A connection still in its
 * handshake is not a session yet: it does not count against
 * `--max-connections`, and only the handshake timeout (or the peer) ends it.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import type { AddressInfo, ListenOptions, Socket } from "node:net";
import * as tls from "node:tls";
import { describeError } from "../common/errors.ts";
import type { TlsFailure } from "../session/handshake.ts";
import { TlsContextError, type TlsFiles } from "./tls_context.ts";

/** Called for each handshake that failed: the peer as `host:port`, and why. */
export type HandshakeFailed = (peer: Deno.NetAddr, failure: TlsFailure) => void;

/** Called for each handshake not finished within the timeout, with how long the peer had. */
export type HandshakeTimedOut = (peer: Deno.NetAddr, afterMs: number) => void;

/** How a {@linkcode NodeTlsListener} listens and reports. */
export interface NodeTlsOptions {
  /** The certificate, key and (when client certificates are required) the client CA. */
  files: TlsFiles;
  /** Bind with SO_REUSEPORT, so that serving threads share the port. */
  reusePort?: boolean;
  /** Close a connection whose handshake is not done after this long; 0 waits forever. */
  handshakeTimeoutMs: number;
  /** A handshake failed. */
  onFailure: HandshakeFailed;
  /** A handshake timed out (the socket is closed). */
  onTimeout: HandshakeTimedOut;
}

/** node:tls's error codes that mean the client certificate was missing or refused. */
const CERTIFICATE_REFUSALS: ReadonlySet<string> = new Set([
  "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE",
  "ERR_SSL_CERTIFICATE_VERIFY_FAILED",
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
]);
const READ_CHUNK_LIMIT = 64;
/** node:tls reads a `handshakeTimeout` of 0 as its 120 s default; below 0 it sets no timer. */
const NO_HANDSHAKE_TIMEOUT = -1;
/** How node:tls says a handshake timed out: Node's code, or the Deno polyfill's message. */
const HANDSHAKE_TIMEOUT_CODE = "ERR_TLS_HANDSHAKE_TIMEOUT";
const HANDSHAKE_TIMEOUT_MESSAGE = "TLS handshake timeout";

/** One TLS connection from node:tls, seen as the driver sees a `Deno.Conn`. */
export class NodeTlsConn {
  readonly #socket: tls.TLSSocket;
  /** Chunks received and not yet read. */
  readonly #chunks: Uint8Array[] = [];
  /** The client's data has ended (it may still read). */
  #ended = false;
  /** The socket is closed both ways. */
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** This end's address. */
  readonly localAddr: Deno.NetAddr;
  /**
   * The handshake node:tls completed before handing the socket over: the
   * verified client certificate's subject (most specific part first), if any.
   */
  readonly completedHandshake: { readonly peerSubject: string | undefined };

  /** Wraps a socket whose handshake is done. */
  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    this.remoteAddr = socketPeer(socket);
    this.localAddr = {
      transport: "tcp",
      hostname: socket.localAddress ?? "?",
      port: socket.localPort ?? 0,
    };
    const peerSubject = socket.authorized ? subjectLine(socket.getPeerCertificate()) : undefined;
    this.completedHandshake = { peerSubject };
    socket.on("data", (data: Uint8Array) => {
      this.#chunks.push(data);
      // Backpressure: stop reading from the kernel while the session has not taken these.
      if (this.#chunks.length >= READ_CHUNK_LIMIT) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("drain", () => this.#notify());
    socket.on("error", (error: Error) => {
      this.#error = error;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#closed = true;
      this.#notify();
    });
  }

  /** Reads into `buffer`; null at the end of the client's data. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      this.#socket.resume();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    return count;
  }

  /**
   * Writes all of `bytes`: node keeps them, so this resolves at once while
   * node's buffer is under its high-water mark, and after the next `drain`
   * when it is not. (Waiting for each write's callback cost a turn of the
   * event loop per reply.) A failed write shows as the socket's error, on
   * the next read or write.
   */
  async write(bytes: Uint8Array): Promise<number> {
    if (this.#error) throw this.#error;
    if (this.#closed) throw new Deno.errors.BrokenPipe("The connection is closed.");
    // The session reuses its buffer; node holds this until it is sent.
    if (this.#socket.write(bytes.slice())) return bytes.length;
    while (this.#socket.writableNeedDrain) {
      if (this.#error) throw this.#error;
      if (this.#closed) throw new Deno.errors.BrokenPipe("The connection is closed.");
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return bytes.length;
  }

  /** Ends the server's side (TLS close_notify, then FIN). */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  /** Turns Nagle's algorithm on or off. */
  setNoDelay(noDelay = true): void {
    this.#socket.setNoDelay(noDelay);
  }

  /** Closes at once. */
  close(): void {
    this.#socket.destroy();
    this.#ended = true;
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** What the listener knows of a TCP connection before its handshake: its peer and when it came. */
interface Arrival {
  peer: Deno.NetAddr;
  at: number;
}

/** A node:tls listener, accepted one by one as `Deno.listen`'s are. */
export class NodeTlsListener {
  readonly #server: tls.Server;
  readonly #options: NodeTlsOptions;
  readonly #ready: NodeTlsConn[] = [];
  /** TCP connections whose handshake is under way, cut by close. */
  readonly #handshaking = new Set<Socket>();
  /**
   * Each TCP connection's peer and arrival time. After a failed handshake
   * the TLS socket no longer knows its peer; the TCP one, seen first, did.
   * Weak, since a failure may be reported after the TCP socket closed.
   */
  readonly #arrivals = new WeakMap<Socket, Arrival>();
  #waiting: ((conn: NodeTlsConn | null) => void) | undefined;
  #closed = false;
  #addr: Deno.NetAddr | undefined;

  private constructor(server: tls.Server, options: NodeTlsOptions) {
    this.#server = server;
    this.#options = options;
    server.on("connection", (socket: Socket) => this.#connected(socket));
    server.on(
      "tlsClientError",
      (error: Error, socket: tls.TLSSocket) => this.#failed(error, socket),
    );
    server.on("secureConnection", (socket: tls.TLSSocket) => this.#arrived(socket));
  }

  /** Where it listens. */
  get addr(): Deno.NetAddr {
    return this.#addr!;
  }

  /**
   * Listens on `hostname:port` with `options.files` (client certificates
   * are required when they have a `clientCa`).
   *
   * @throws {TlsContextError} when a file is unusable.
   * @throws {Error} when the port cannot be had.
   */
  static async open(
    hostname: string,
    port: number,
    options: NodeTlsOptions,
  ): Promise<NodeTlsListener> {
    checkTlsFilesForNode(options.files);
    const server = tls.createServer({
      ...secureContextOptions(options.files),
      requestCert: options.files.clientCa !== undefined,
      rejectUnauthorized: true,
      // From accept on, so the handshake's last flight does not wait for a delayed ACK either.
      noDelay: true,
      handshakeTimeout: options.handshakeTimeoutMs > 0
        ? options.handshakeTimeoutMs
        : NO_HANDSHAKE_TIMEOUT,
    });
    const listener = new NodeTlsListener(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const where: ListenOptions & { reusePort?: boolean } = {
        port,
        host: hostname,
        reusePort: options.reusePort || undefined,
      };
      server.listen(where, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    listener.#addr = { transport: "tcp", hostname: address.address, port: address.port };
    return listener;
  }

  /**
   * Rotation: new connections get `files`, open ones keep theirs. The
   * client CA's presence cannot change (whether a certificate is asked for
   * is fixed at the start).
   *
   * @throws {TlsContextError} when a file is unusable; the current files stay.
   */
  setFiles(files: TlsFiles): void {
    // node:tls takes a broken file without a word and then fails every handshake: check first.
    checkTlsFilesForNode(files);
    this.#server.setSecureContext(secureContextOptions(files));
  }

  /** The next connection whose handshake is done. */
  accept(): Promise<NodeTlsConn> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("The listener is closed."));
    return new Promise((resolve, reject) => {
      this.#waiting = (conn) =>
        conn ? resolve(conn) : reject(new Deno.errors.BadResource("The listener is closed."));
    });
  }

  /** Stops listening and cuts the handshakes under way; connections accepted stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const socket of [...this.#handshaking]) socket.destroy();
    this.#handshaking.clear();
    for (const conn of this.#ready.splice(0)) conn.close();
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(null);
  }

  #connected(socket: Socket): void {
    this.#arrivals.set(socket, { peer: socketPeer(socket), at: Date.now() });
    this.#handshaking.add(socket);
    socket.once("close", () => this.#handshaking.delete(socket));
  }

  #failed(error: Error & { code?: string }, socket: tls.TLSSocket): void {
    const arrival = this.#takeArrival(socket);
    // node:tls reports a handshake timeout and leaves the socket open; nothing more will come.
    socket.destroy();
    if (this.#closed) return; // cut by close, not the peer's doing
    const peer = arrival?.peer ?? socketPeer(socket);
    if (isHandshakeTimeout(error)) {
      this.#options.onTimeout(peer, Date.now() - (arrival?.at ?? Date.now()));
      return;
    }
    const refused = CERTIFICATE_REFUSALS.has(error.code ?? "");
    this.#options.onFailure(peer, {
      kind: refused ? "client_cert_refused" : "failed",
      reason: `the handshake failed: ${describeError(error)}`,
    });
  }

  #arrived(socket: tls.TLSSocket): void {
    this.#takeArrival(socket);
    const conn = new NodeTlsConn(socket);
    if (this.#closed) return conn.close();
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(conn);
    else this.#ready.push(conn);
  }

  /** The handshake is over: its arrival. The TLS socket's TCP socket is node:tls's `_parent`. */
  #takeArrival(socket: tls.TLSSocket): Arrival | undefined {
    const tcp = (socket as unknown as { _parent?: Socket })._parent;
    if (tcp === undefined) return undefined;
    this.#handshaking.delete(tcp);
    return this.#arrivals.get(tcp);
  }
}

/**
 * Checks that node:tls can use the files: each parses as PEM of its kind
 * and the key is the certificate's. (node:tls itself takes a broken file
 * silently and fails every handshake after.)
 *
 * @throws {TlsContextError} naming the file's role and what is wrong with it.
 */
export function checkTlsFilesForNode(files: TlsFiles): void {
  const certificate = parsed("certificate", () => new X509Certificate(files.cert));
  const key = parsed("key", () => createPrivateKey(files.key));
  if (!certificate.checkPrivateKey(key)) {
    throw new TlsContextError("key", "The key does not belong to the certificate.");
  }
  const clientCa = files.clientCa;
  if (clientCa !== undefined) parsed("client CA", () => new X509Certificate(clientCa));
}

function parsed<T>(role: "certificate" | "key" | "client CA", parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new TlsContextError(role, `The ${role} is not usable PEM: ${describeError(error)}.`);
  }
}

/** The files as node:tls's secure-context options, TLS 1.2 at least. */
function secureContextOptions(files: TlsFiles): tls.SecureContextOptions {
  return {
    key: files.key,
    cert: files.cert,
    ca: files.clientCa === undefined ? undefined : [files.clientCa],
    minVersion: "TLSv1.2",
  };
}

function isHandshakeTimeout(error: Error & { code?: string }): boolean {
  return error.code === HANDSHAKE_TIMEOUT_CODE || error.message === HANDSHAKE_TIMEOUT_MESSAGE;
}

function socketPeer(socket: Socket): Deno.NetAddr {
  return { transport: "tcp", hostname: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 };
}

/** A certificate's subject as one line, most specific part first (`CN=…,O=…`), as OpenSSL's RFC 2253. */
function subjectLine(certificate: tls.PeerCertificate | undefined): string | undefined {
  const subject = certificate?.subject as unknown as Record<string, string | string[]> | undefined;
  if (subject === undefined) return undefined;
  const parts = Object.entries(subject).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((one) => `${name}=${one}`)
  );
  return parts.reverse().join(",");
}
