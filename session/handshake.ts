/**
 * The outcome of a connection's handshake (TLS), counted and logged in the
 * session layer and nowhere else: a transport only says how its handshake
 * ended ({@linkcode TlsFailure} when it failed), and the same counters,
 * log lines and repeat summaries follow on both event loops.
 *
 * Two paths report here:
 * - The epoll loop runs the handshake on a connection whose session exists
 *   from accept (it holds the connection slot and times the handshake).
 *   The driver tells the session (`Session.handshakeDone`,
 *   `Session.handshakeFailed`), and the session counts and logs through
 *   this module; its own handshake timeout is one of its timeouts.
 * - node:tls, under the `Deno.listen` loop, finishes the handshake before
 *   it hands the socket over, so a failure or a timeout comes before any
 *   session exists. Opening a session at node:tls's TCP accept instead
 *   would count the connection (`connections_total`, `--max-connections`)
 *   before its handshake, which that loop has never done, and would give
 *   the listener a session it has no way to drive. So the listener reports
 *   its failures and timeouts to {@linkcode reportHandshakeFailure} and
 *   {@linkcode reportHandshakeTimeout} with the thread's context, and a
 *   completed handshake reaches `Session.handshakeDone` like the epoll
 *   loop's.
 *
 * This module imports nothing from session/session.ts (which imports it): a
 * context here is the part of the session context that reporting uses.
 *
 * @module
 */

import type { Logger } from "../common/log.ts";
import type { RepeatSummary } from "../common/log_repeats.ts";
import { Counter } from "./counters.ts";
import { formatAddress } from "../common/net_address.ts";

/**
 * Why a TLS connection failed, for logs and metrics: `client_cert_refused`
 * when the client sent no certificate or one that did not verify, `failed`
 * for anything else (not TLS, no common version or cipher, a reset).
 */
export interface TlsFailure {
  /** The metric label. */
  kind: "failed" | "client_cert_refused";
  /** One line for the log, without personal data. */
  reason: string;
}

/** What reporting a handshake uses of a thread's session context. */
export interface HandshakeReporting {
  /** This thread's counters. */
  counters: Float64Array;
  /** Where events are logged. */
  log: Logger;
  /** Refusals logged so far by client and reason, so that repeats are summarised. */
  refusals: RepeatSummary;
}

/** The failure reason of a client that hung up mid-handshake: a port scan or health check. */
const HANG_UP_REASONS: ReadonlySet<string> = new Set([
  "the client closed the connection during the handshake",
  "the client closed the connection mid-record",
]);

/** transport/tls_connection.ts's reason when the client sent no certificate. */
const NO_CERTIFICATE_REASON = "the client sent no certificate";

/**
 * Counts a failed handshake and logs it: at info with the peer's address
 * and the reason (repeats from one host summarised, as refusals are), at
 * debug when the client merely hung up. Nothing of the certificate is logged.
 */
export function reportHandshakeFailure(
  context: HandshakeReporting,
  peer: { hostname: string; port: number },
  failure: TlsFailure,
  now: number,
): void {
  context.counters[handshakeFailureCounter(failure)]++;
  const fields = { peer: formatAddress(peer.hostname, peer.port), reason: failure.reason };
  if (!isLoggedAtInfo(failure)) context.log.debug("TLS handshake failed", fields);
  else if (context.refusals.note(`${peer.hostname} ${failureCode(failure)}`, now) > 0) {
    context.log.info("TLS handshake failed", fields);
  }
}

/**
 * Counts a handshake that did not finish in time and logs it at debug, as
 * a session logs its own timeouts.
 */
export function reportHandshakeTimeout(
  context: HandshakeReporting,
  peer: { hostname: string; port: number },
  afterMs: number,
): void {
  context.counters[Counter.handshakeTimeouts]++;
  context.log.debug("handshake timeout", {
    peer: formatAddress(peer.hostname, peer.port),
    after_ms: afterMs,
  });
}

/** The counter a failed handshake is counted in. */
export function handshakeFailureCounter(failure: TlsFailure): number {
  return failure.kind === "client_cert_refused"
    ? Counter.tlsClientCertRefused
    : Counter.tlsHandshakesFailed;
}

/**
 * A short name for a failed handshake's cause, without spaces: with the
 * peer's host, the key under which repeated failures are summarised.
 */
export function failureCode(failure: TlsFailure): string {
  if (failure.kind === "failed") return "tls_handshake_failed";
  return failure.reason === NO_CERTIFICATE_REASON
    ? "tls_no_client_certificate"
    : "tls_client_certificate_unverified";
}

/**
 * Whether a handshake failure is worth an info line: not when the client
 * merely hung up (load balancers' TCP checks do that all day).
 */
export function isLoggedAtInfo(failure: TlsFailure): boolean {
  return !HANG_UP_REASONS.has(failure.reason);
}
