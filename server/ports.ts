/**
 * The ports a serving thread listens on: the binary protocol's, and with
 * `--ldap-port`/`--ldaps-port` the LDAP front end's, each with the session
 * context its connections share. One place builds them for the worker
 * threads (server/worker.ts) and for the main thread when it serves
 * itself (server/start.ts, `--io deno`).
 *
 * The contexts share everything but their front end and transport: one
 * book, one set of limits and counters, one access policy, one table of
 * per-client limits, so that a client is the same client on every port.
 * The plain LDAP port offers StartTLS when the server has a certificate
 * and serves with the epoll loop (the `Deno.listen` loop cannot upgrade
 * an accepted socket).
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import type { Logger } from "../common/log.ts";
import { LDAP_COUNTERS, outcomeCounters } from "../session/counters.ts";
import { createSessionContext, type SessionContext } from "../session/session.ts";
import { BINARY_FRONT_END } from "../wire/binary.ts";
import { ldapFrontEnd, type StartTlsOffer } from "../wire/ldap.ts";
import type { PortToServe } from "./serve.ts";
import type { WorkerStart } from "./worker_messages.ts";

/** What a thread's ports are built from: its start message, and what it made of it. */
export interface PortSettings {
  /** The thread's start message (addresses, TLS, LDAP, limits, access). */
  start: WorkerStart;
  /** The book, as this thread holds it. */
  book: AddressBook;
  /** This thread's row of counters. */
  counters: Float64Array;
  /** Where this thread logs. */
  log: Logger;
}

/**
 * The ports to serve, in this order: the binary protocol's, LDAP's, LDAPS's
 * (the last two when asked for).
 *
 * @throws {InvalidDnError} when the LDAP base is not a DN (the command line checks it first).
 */
export function portsToServe({ start, book, counters, log }: PortSettings): PortToServe[] {
  const binary = createSessionContext({
    frontEnd: BINARY_FRONT_END,
    book,
    limits: start.limits,
    counters,
    openConnections: start.openConnections,
    log,
    access: start.access,
    clientLimits: start.clientLimits,
    clientCertificates: start.tls?.clientCa !== undefined,
  });
  const { hostname, sharing, ldap } = start;
  const ports: PortToServe[] = [{ address: start, tls: start.tls, context: binary }];
  if (ldap === undefined) return ports;
  // StartTLS needs a certificate, and a loop that can upgrade a socket: the epoll loop.
  const upgradeTls = start.io === "epoll" ? start.tls : undefined;
  const context = (startTls: StartTlsOffer): SessionContext => {
    const frontEnd = ldapFrontEnd(
      { base: ldap.base, sizeLimit: ldap.sizeLimit, startTls },
      LDAP_COUNTERS,
    );
    frontEnd.prepare?.(book); // the index is the book's: built once for both ports
    return {
      ...binary,
      frontEnd,
      outcomes: outcomeCounters(counters, frontEnd.name),
      clientCertificates: startTls === "established" && start.tls?.clientCa !== undefined,
    };
  };
  if (ldap.port !== undefined) {
    ports.push({
      address: { hostname, port: ldap.port, sharing },
      tls: undefined,
      upgradeTls,
      context: context(upgradeTls !== undefined ? "offered" : "unavailable"),
    });
  }
  if (ldap.tlsPort !== undefined) {
    ports.push({
      address: { hostname, port: ldap.tlsPort, sharing },
      tls: start.tls,
      context: context("established"),
    });
  }
  return ports;
}

/** The ports bound, as a thread reports them: the binary protocol's first, then LDAP's. */
export function boundPorts(
  start: WorkerStart,
  bound: readonly number[],
): { port: number; ldapPort?: number; ldapsPort?: number } {
  let next = 1;
  const ldapPort = start.ldap?.port !== undefined ? bound[next++] : undefined;
  const ldapsPort = start.ldap?.tlsPort !== undefined ? bound[next++] : undefined;
  return { port: bound[0], ldapPort, ldapsPort };
}
