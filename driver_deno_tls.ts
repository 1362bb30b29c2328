/**
 * TLS with client certificates for the `Deno.listen` driver (driver_deno.ts),
 * where the epoll loop cannot run: `Deno.listenTls` cannot ask for a client
 * certificate, so this listener is `node:tls` (`requestCert`,
 * `rejectUnauthorized`, the client CA, TLS 1.2 at least), and each of its
 * sockets is wrapped as the few `Deno.Conn` calls the driver makes: read,
 * write, closeWrite, close, setNoDelay, remoteAddr. A completed handshake's
 * certificate subject is {@linkcode NodeTlsConn.peerSubject}.
 *
 * What it lacks against the epoll loop: one thread only (no SO_REUSEPORT
 * here), no certificate rotation, and a refusal's reason is what node:tls
 * says (a certificate from another CA shows only as a reset).
 *
 * @module
 */

import type { AddressInfo, Socket } from "node:net";
import * as tls from "node:tls";
import { describeError } from "./errors.ts";
import type { TlsFiles } from "./driver.ts";
import type { TlsFailure } from "./tls_connection.ts";

/** Called for each handshake that failed: the peer as `host:port`, and why. */
export type HandshakeFailed = (peer: Deno.NetAddr, failure: TlsFailure) => void;

/** node:tls's error codes that mean the client certificate was missing or refused. */
const CERTIFICATE_REFUSALS: ReadonlySet<string> = new Set([
  "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE",
  "ERR_SSL_CERTIFICATE_VERIFY_FAILED",
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
]);
const READ_CHUNK_LIMIT = 64;

/** One TLS connection from node:tls, seen as the driver sees a `Deno.Conn`. */
export class NodeTlsConn {
  readonly #socket: tls.TLSSocket;
  /** Chunks received and not yet read. */
  readonly #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** The verified client certificate's subject (most specific part first), if any. */
  readonly peerSubject: string | undefined;

  /** Wraps a socket whose handshake is done. */
  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "?",
      port: socket.remotePort ?? 0,
    };
    this.peerSubject = socket.authorized ? subjectLine(socket.getPeerCertificate()) : undefined;
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
    socket.on("error", (error: Error) => {
      this.#error = error;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
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

  /** Writes all of `bytes`; resolves once node has taken them. */
  write(bytes: Uint8Array): Promise<number> {
    const copy = bytes.slice(); // the session reuses its buffer
    return new Promise((resolve, reject) => {
      this.#socket.write(copy, (error?: Error | null) => {
        if (error) reject(error);
        else resolve(copy.length);
      });
    });
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
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** A node:tls listener that requires client certificates, accepted one by one as `Deno.listen`'s are. */
export class NodeTlsListener {
  readonly #server: tls.Server;
  readonly #ready: NodeTlsConn[] = [];
  #waiting: ((conn: NodeTlsConn | null) => void) | undefined;
  #closed = false;
  /** Where it listens. */
  readonly addr: Deno.NetAddr;

  private constructor(server: tls.Server, addr: Deno.NetAddr) {
    this.#server = server;
    this.addr = addr;
  }

  /**
   * Listens on `hostname:port` with `files` (whose `clientCa` is required).
   *
   * @throws {Error} when the port cannot be had or a file is unusable.
   */
  static async open(
    hostname: string,
    port: number,
    files: TlsFiles,
    onFailure: HandshakeFailed,
  ): Promise<NodeTlsListener> {
    const server = tls.createServer({
      key: files.key,
      cert: files.cert,
      ca: files.clientCa === undefined ? undefined : [files.clientCa],
      requestCert: files.clientCa !== undefined,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      // From accept on, so the handshake's last flight does not wait for a delayed ACK either.
      noDelay: true,
    });
    // After a failed handshake the TLS socket no longer knows its peer; the TCP one, seen first, did.
    const peers = new WeakMap<object, Deno.NetAddr>();
    server.on("connection", (socket: Socket) => {
      peers.set(socket, {
        transport: "tcp",
        hostname: socket.remoteAddress ?? "?",
        port: socket.remotePort ?? 0,
      });
    });
    server.on("tlsClientError", (error: Error & { code?: string }, socket: tls.TLSSocket) => {
      const tcp = (socket as unknown as { _parent?: object })._parent;
      const peer: Deno.NetAddr = (tcp && peers.get(tcp)) ?? {
        transport: "tcp",
        hostname: socket.remoteAddress ?? "?",
        port: socket.remotePort ?? 0,
      };
      const refused = CERTIFICATE_REFUSALS.has(error.code ?? "");
      onFailure(peer, {
        kind: refused ? "client_cert_refused" : "failed",
        reason: `the handshake failed: ${describeError(error)}`,
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, hostname, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const listener = new NodeTlsListener(server, {
      transport: "tcp",
      hostname: address.address,
      port: address.port,
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => listener.#arrived(socket));
    return listener;
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

  /** Stops listening; connections accepted stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const conn of this.#ready.splice(0)) conn.close();
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(null);
  }

  #arrived(socket: tls.TLSSocket): void {
    const conn = new NodeTlsConn(socket);
    if (this.#closed) return conn.close();
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(conn);
    else this.#ready.push(conn);
  }
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
