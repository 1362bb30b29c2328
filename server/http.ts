/**
 * The server's HTTP status endpoint, on `--metrics-port`: Prometheus
 * metrics, and the liveness and readiness checks a load balancer or an
 * orchestrator polls (HAProxy's `option httpchk GET /readyz`, Kubernetes
 * probes).
 *
 * | path       | 200 when                                      | otherwise |
 * | ---------- | --------------------------------------------- | --------- |
 * | `/metrics` | a book is loaded: the counters, text format   | 503       |
 * | `/healthz` | the process runs and answers                  | -         |
 * | `/readyz`  | a book is loaded, it accepts, no shutdown yet | 503       |
 *
 * Every path answers `GET` and `HEAD`; other methods get 405.
 *
 * It is served from its own listener, one request per connection, by a
 * small HTTP/1.1 reader rather than `Deno.serve`, whose failed accept (out
 * of file descriptors) is an uncaught error that ends the process. So the
 * port holds the same promises as the lookup port:
 *
 * - a failed accept pauses accepting and is logged once per episode;
 * - `--allow` and protected mode decide who may ask, on accept, before a
 *   byte is read (a `--trusted-proxy` peer may too, when `--proxy-protocol`
 *   is on: the balancers poll `/readyz`); the others get 403;
 * - at most {@linkcode STATUS_MAX_CONNECTIONS} connections are open at
 *   once (more get 503 at once), so idle connections cannot take every
 *   descriptor;
 * - a request must arrive, and its answer be taken, within
 *   {@linkcode STATUS_TIMEOUT_MS}, so a slow sender is cut;
 * - a request head over {@linkcode STATUS_MAX_HEAD_BYTES} gets 431.
 *
 * @module
 */

import { AccessPolicy, type AccessRules, type AccessVerdict } from "../access/policy.ts";
import { describeError } from "../common/errors.ts";
import { Logger } from "../common/log.ts";
import { FailureEpisode } from "../common/log_repeats.ts";
import { formatAddress } from "../common/net_address.ts";
import { ACCEPT_PAUSE_MS, noteAcceptFailed, noteAcceptsResumed } from "../io/service.ts";
import { writeAll } from "../common/write_all.ts";
import { StartError } from "./error.ts";

/** What the endpoint reports; the server replaces it as it starts, serves and drains. */
export interface ServerStatus {
  /** Whether a load balancer should send it connections. */
  ready(): boolean;
  /** The metrics in Prometheus text, or `undefined` before there are any (no book yet). */
  metrics(): string | undefined;
}

/** The status of a process still loading its book: alive, not ready, no metrics yet. */
export const LOADING_STATUS: ServerStatus = { ready: () => false, metrics: () => undefined };

/** The endpoint's paths. */
export const STATUS_PATHS = {
  /** Prometheus metrics. */
  metrics: "/metrics",
  /** Liveness. */
  health: "/healthz",
  /** Readiness. */
  ready: "/readyz",
} as const;

const HTTP_OK = 200;
const HTTP_NOT_FOUND = 404;
const HTTP_METHOD_NOT_ALLOWED = 405;
const HTTP_UNAVAILABLE = 503;
const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT = "text/plain; charset=utf-8";

/**
 * Answers one request from `status`, with no I/O, so every answer can be
 * tested without a socket.
 *
 * ```ts
 * import { answerStatusRequest, LOADING_STATUS } from "./http.ts";
 * answerStatusRequest(new Request("http://x/readyz"), LOADING_STATUS).status; // 503
 * ```
 */
export function answerStatusRequest(request: Request, status: ServerStatus): Response {
  return answerStatus(request.method, new URL(request.url).pathname, status);
}

/** Answers a request for `path` (no query) by `method`, as {@linkcode answerStatusRequest}. */
function answerStatus(method: string, path: string, status: ServerStatus): Response {
  const known = Object.values(STATUS_PATHS) as string[];
  if (!known.includes(path)) {
    return text(
      HTTP_NOT_FOUND,
      "Not found: the paths are GET /metrics, /healthz and /readyz.\n",
    );
  }
  if (method !== "GET" && method !== "HEAD") {
    return new Response(`Only GET and HEAD read ${path}.\n`, {
      status: HTTP_METHOD_NOT_ALLOWED,
      headers: { allow: "GET, HEAD", "content-type": PLAIN_TEXT },
    });
  }
  if (path === STATUS_PATHS.health) return text(HTTP_OK, "ok\n");
  if (path === STATUS_PATHS.ready) {
    return status.ready()
      ? text(HTTP_OK, "ready\n")
      : text(HTTP_UNAVAILABLE, "not ready: loading the book or shutting down\n");
  }
  const metrics = status.metrics();
  if (metrics === undefined) return text(HTTP_UNAVAILABLE, "no metrics yet: loading the book\n");
  return new Response(metrics, { headers: { "content-type": PROMETHEUS_TEXT } });
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": PLAIN_TEXT } });
}

/** Connections open at once on the status port; more are answered 503 and closed. */
export const STATUS_MAX_CONNECTIONS = 64;
/** Time for a request to arrive whole and its answer to be taken, in milliseconds. */
export const STATUS_TIMEOUT_MS = 5000;
/** The largest request head (request line and headers) read. */
export const STATUS_MAX_HEAD_BYTES = 8192;
const READ_BYTES = 2048;
/** How long, and how many bytes, a closing connection is read and dropped (see linger). */
const LINGER_MS = 1000;
const MAX_LINGER_BYTES = 65536;

const HTTP_BAD_REQUEST = 400;
const HTTP_FORBIDDEN = 403;
const HTTP_HEAD_TOO_LARGE = 431;
const REASONS: Readonly<Record<number, string>> = {
  [HTTP_OK]: "OK",
  [HTTP_BAD_REQUEST]: "Bad Request",
  [HTTP_FORBIDDEN]: "Forbidden",
  [HTTP_NOT_FOUND]: "Not Found",
  [HTTP_METHOD_NOT_ALLOWED]: "Method Not Allowed",
  [HTTP_HEAD_TOO_LARGE]: "Request Header Fields Too Large",
  [HTTP_UNAVAILABLE]: "Service Unavailable",
};
/** `METHOD SP request-target SP HTTP/1.x` (RFC 9112 section 3). */
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/1\.[01]$/;

/** What a request head says, or why it cannot be answered. */
export type RequestHead =
  | { kind: "request"; method: string; path: string }
  | { kind: "incomplete" }
  | { kind: "refused"; status: number; reason: string };

/**
 * Reads the request line of a request head in `bytes` (all that arrived
 * so far), purely; the headers are not needed and are skipped.
 *
 * ```ts
 * import { parseRequestHead } from "./http.ts";
 * const head = new TextEncoder().encode("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
 * parseRequestHead(head); // { kind: "request", method: "GET", path: "/readyz" }
 * ```
 */
export function parseRequestHead(bytes: Uint8Array): RequestHead {
  const end = headEnd(bytes);
  if (end < 0) {
    return bytes.length >= STATUS_MAX_HEAD_BYTES
      ? refused(HTTP_HEAD_TOO_LARGE, `the request head is over ${STATUS_MAX_HEAD_BYTES} bytes`)
      : { kind: "incomplete" };
  }
  let lineEnd = bytes.indexOf(0x0a);
  if (lineEnd > 0 && bytes[lineEnd - 1] === 0x0d) lineEnd--;
  const line = new TextDecoder("latin1").decode(bytes.subarray(0, lineEnd));
  const match = REQUEST_LINE.exec(line);
  if (match === null) return refused(HTTP_BAD_REQUEST, "the request line is not HTTP/1.x");
  const path = requestPath(match[2]);
  if (path === undefined) return refused(HTTP_BAD_REQUEST, "the request target is not a path");
  return { kind: "request", method: match[1], path };
}

function refused(status: number, reason: string): RequestHead {
  return { kind: "refused", status, reason };
}

/** Where the head ends (the empty line), or -1 when it has not yet. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 1; i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (bytes[i - 1] === 0x0a) return i + 1;
    if (bytes[i - 1] === 0x0d && i >= 3 && bytes[i - 2] === 0x0a && bytes[i - 3] === 0x0d) {
      return i + 1;
    }
  }
  return -1;
}

/** The path of an origin-form (`/x?y`) or absolute-form (`http://h/x`) target. */
function requestPath(target: string): string | undefined {
  if (target.startsWith("/")) return target.replace(/[?#].*$/s, "");
  try {
    const url = new URL(target);
    return url.protocol === "http:" || url.protocol === "https:" ? url.pathname : undefined;
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode StatusEndpoint.open}. */
export interface StatusEndpointOptions {
  /** Who may ask: `--allow`, protected mode, `--trusted-proxy`; everyone when absent. */
  access?: AccessRules;
  /** Where accept failures are logged; a text logger on stderr by default. */
  log?: Logger;
  /** Connections open at once; {@linkcode STATUS_MAX_CONNECTIONS} by default. */
  maxConnections?: number;
  /** Time for one request and its answer; {@linkcode STATUS_TIMEOUT_MS} by default. */
  timeoutMs?: number;
}

/** The status endpoint, listening; its {@linkcode status} may be replaced at any time. */
export class StatusEndpoint {
  /** What it reports now. */
  status: ServerStatus;
  /** Where it listens, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.Listener;
  readonly #policy: AccessPolicy | undefined;
  /** With `--proxy-protocol`, the balancers, which poll `/readyz` from addresses `--allow` may not name. */
  readonly #trustedProxies: AccessPolicy | undefined;
  readonly #log: Logger;
  readonly #maxConnections: number;
  readonly #timeoutMs: number;
  readonly #connections = new Set<Deno.Conn>();
  /** Connections admitted and not yet closed: those the cap counts. */
  readonly #admitted = new Set<Deno.Conn>();
  readonly #acceptFailures = new FailureEpisode();
  readonly #accepting: Promise<void>;
  #closing = false;
  #closed: Promise<void> | undefined;

  private constructor(
    listener: Deno.Listener,
    status: ServerStatus,
    options: StatusEndpointOptions,
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.status = status;
    // The port is not behind the balancer: its own peers are judged, with no PROXY header.
    this.#policy = options.access &&
      AccessPolicy.fromRules({ ...options.access, proxyProtocol: false });
    this.#trustedProxies = options.access?.proxyProtocol
      ? AccessPolicy.fromRules({
        protectedMode: false,
        proxyProtocol: true,
        trustedProxies: options.access.trustedProxies,
      })
      : undefined;
    this.#log = options.log ?? new Logger();
    this.#maxConnections = options.maxConnections ?? STATUS_MAX_CONNECTIONS;
    this.#timeoutMs = options.timeoutMs ?? STATUS_TIMEOUT_MS;
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Listens on `hostname:port` (0 picks a free port).
   *
   * @throws {StartError} when the port is in use or the address is not this machine's.
   */
  static open(
    hostname: string,
    port: number,
    status: ServerStatus = LOADING_STATUS,
    options: StatusEndpointOptions = {},
  ): StatusEndpoint {
    let listener: Deno.Listener;
    try {
      listener = Deno.listen({ hostname, port });
    } catch (error) {
      const where = formatAddress(hostname, port);
      if (error instanceof Deno.errors.AddrInUse) {
        throw new StartError(`Cannot serve metrics on ${where}: the port is already in use.`);
      }
      if (error instanceof Deno.errors.AddrNotAvailable) {
        throw new StartError(`Cannot serve metrics on ${where}: no such address on this machine.`);
      }
      throw error;
    }
    return new StatusEndpoint(listener, status, options);
  }

  /** Stops listening and closes every connection; safe to call more than once. */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      this.#closing = true;
      closeQuietly(this.#listener);
      for (const conn of this.#connections) closeQuietly(conn);
      await this.#accepting;
    })();
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        // Out of file descriptors and the like: wait a little rather than spin, and say so once.
        noteAcceptFailed(this.#log, this.#acceptFailures, Date.now(), {
          port: "metrics",
          error: describeError(error),
        });
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_PAUSE_MS));
        continue;
      }
      noteAcceptsResumed(this.#log, this.#acceptFailures, Date.now(), { port: "metrics" });
      const serving = this.#serve(conn);
      // A refusal is finished before the next accept, so refusals hold one descriptor at most.
      if (!this.#admitted.has(conn)) await serving;
    }
  }

  /** Whether the peer may ask: as the lookup port's rules say, or as a trusted balancer. */
  #verdict(conn: Deno.Conn): AccessVerdict {
    if (this.#policy === undefined) return "ok";
    const peer = (conn.remoteAddr as Deno.NetAddr).hostname;
    const verdict = this.#policy.clientVerdict(peer);
    return verdict !== "ok" && this.#trustedProxies?.peerVerdict(peer) === "ok" ? "ok" : verdict;
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    this.#connections.add(conn);
    const timer = setTimeout(() => closeQuietly(conn), this.#timeoutMs);
    const verdict = this.#verdict(conn);
    // Refusals are said at once and closed without lingering, so they hold no slot.
    const admitted = verdict === "ok" && this.#admitted.size < this.#maxConnections;
    if (admitted) this.#admitted.add(conn);
    try {
      if (verdict !== "ok") {
        const reason = `Forbidden: ${AccessPolicy.replyText(verdict)}\n`;
        await writeAnswer(conn, "GET", text(HTTP_FORBIDDEN, reason));
      } else if (!admitted) {
        await writeAnswer(conn, "GET", text(HTTP_UNAVAILABLE, "Busy: too many connections.\n"));
      } else {
        await this.#answer(conn);
        await linger(conn);
      }
    } catch {
      // Reset by the peer, or closed at the deadline: nothing more to say to it.
    } finally {
      clearTimeout(timer);
      this.#connections.delete(conn);
      this.#admitted.delete(conn);
      closeQuietly(conn);
    }
  }

  async #answer(conn: Deno.Conn): Promise<void> {
    const head = await readHead(conn);
    if (head.kind === "request") {
      await writeAnswer(conn, head.method, answerStatus(head.method, head.path, this.status));
    } else if (head.kind === "refused") {
      await writeAnswer(conn, "GET", text(head.status, `Bad request: ${head.reason}.\n`));
    }
  }
}

/** Reads until the request head is whole, refused, or the peer ends. */
async function readHead(conn: Deno.Conn): Promise<RequestHead> {
  const buffer = new Uint8Array(STATUS_MAX_HEAD_BYTES);
  let length = 0;
  for (;;) {
    const read = await conn.read(
      buffer.subarray(length, Math.min(length + READ_BYTES, buffer.length)),
    );
    if (read === null) return { kind: "incomplete" };
    length += read;
    const head = parseRequestHead(buffer.subarray(0, length));
    if (head.kind !== "incomplete") return head;
  }
}

/** Writes `answer` as an HTTP/1.1 response that closes the connection; no body for HEAD. */
async function writeAnswer(conn: Deno.Conn, method: string, answer: Response): Promise<void> {
  const body = new Uint8Array(await answer.arrayBuffer());
  const lines = [`HTTP/1.1 ${answer.status} ${REASONS[answer.status] ?? ""}`];
  for (const [name, value] of answer.headers) lines.push(`${name}: ${value}`);
  lines.push(`content-length: ${body.length}`, "connection: close", "", "");
  const head = new TextEncoder().encode(lines.join("\r\n"));
  const bytes = new Uint8Array(head.length + (method === "HEAD" ? 0 : body.length));
  bytes.set(head);
  if (method !== "HEAD") bytes.set(body, head.length);
  await writeAll(conn, bytes);
}

/**
 * Half-closes after the answer and reads what the peer still sends, for a
 * moment, before the close: closing with its bytes unread would reset the
 * connection, and a reset can destroy the answer before the peer reads it.
 */
async function linger(conn: Deno.Conn): Promise<void> {
  await conn.closeWrite();
  const sink = new Uint8Array(READ_BYTES);
  const timer = setTimeout(() => closeQuietly(conn), LINGER_MS);
  try {
    for (let read = 0; read < MAX_LINGER_BYTES;) {
      const got = await conn.read(sink);
      if (got === null) return;
      read += got;
    }
  } finally {
    clearTimeout(timer);
  }
}

function closeQuietly(closable: { close(): void }): void {
  try {
    closable.close();
  } catch {
    // Closed already.
  }
}
