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
 * @module
 */

import { formatAddress } from "../common/net_address.ts";
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
  const path = new URL(request.url).pathname;
  const known = Object.values(STATUS_PATHS) as string[];
  if (!known.includes(path)) {
    return text(
      HTTP_NOT_FOUND,
      "Not found: the paths are GET /metrics, /healthz and /readyz.\n",
    );
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
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

/** The status endpoint, listening; its {@linkcode status} may be replaced at any time. */
export class StatusEndpoint {
  /** What it reports now. */
  status: ServerStatus;
  /** Where it listens, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  readonly #server: Deno.HttpServer;
  #closed: Promise<void> | undefined;

  private constructor(server: Deno.HttpServer, addr: Deno.NetAddr, status: ServerStatus) {
    this.#server = server;
    this.addr = addr;
    this.status = status;
  }

  /**
   * Listens on `hostname:port` (0 picks a free port).
   *
   * @throws {StartError} when the port is in use or the address is not this machine's.
   */
  static open(hostname: string, port: number, status = LOADING_STATUS): StatusEndpoint {
    let addr: Deno.NetAddr | undefined;
    let endpoint: StatusEndpoint | undefined;
    try {
      const server = Deno.serve(
        { hostname, port, onListen: (a) => addr = a as Deno.NetAddr },
        (request) => answerStatusRequest(request, endpoint!.status),
      );
      endpoint = new StatusEndpoint(server, addr ?? server.addr as Deno.NetAddr, status);
      return endpoint;
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
  }

  /** Stops listening; safe to call more than once. */
  close(): Promise<void> {
    return this.#closed ??= this.#server.shutdown();
  }
}
