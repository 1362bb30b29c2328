/**
 * What the two event loops (drivers) share: the interface a serving thread
 * uses to control either, and how often each looks at its sessions'
 * deadlines. A driver only moves bytes between sockets and sessions
 * (session/session.ts holds every per-connection rule) and keeps their deadlines.
 *
 * - io/epoll.ts: an epoll loop over FFI that owns its sockets (Linux),
 *   with a transport per connection, plain or TLS (transport/transport.ts).
 * - io/deno.ts: `Deno.listen` (and node:tls) with one async loop per
 *   connection.
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import type { LogFields, Logger } from "../common/log.ts";
import type { FailureEpisode } from "../common/log_repeats.ts";
import {
  LINGER_MS,
  type ServiceLimits,
  type SessionContext,
  WRITE_PROBES,
} from "../session/session.ts";

/** A running event loop serving one listener. Both drivers implement it alike. */
export interface Service {
  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void;
  /**
   * Answers what clients had sent, ends their connections, and resolves once
   * every connection is closed. For the drain grace (session/session.ts) it still
   * accepts, since clients may wait in the kernel's accept queue.
   */
  shutdown(): Promise<void>;
  /** Closes the listener and every connection at once; resolves once the loop has stopped. */
  abort(): Promise<void>;
  /** Resolves when the loop has stopped, for whatever reason. */
  readonly done: Promise<void>;
}

/**
 * Several services run as one: a thread that serves several listeners
 * with a loop each (`Deno.listen`'s) controls them through this.
 */
export class ServiceGroup implements Service {
  readonly #services: readonly Service[];
  /** Resolves when every service has stopped; rejects when one failed. */
  readonly done: Promise<void>;

  /** Groups `services`; each goes on running as it was. */
  constructor(services: readonly Service[]) {
    this.#services = services;
    this.done = Promise.all(services.map((service) => service.done)).then(() => {});
  }

  /** Gives every service the book. */
  setBook(book: AddressBook): void {
    for (const service of this.#services) service.setBook(book);
  }

  /** Drains every service; resolves once all have. */
  async shutdown(): Promise<void> {
    await Promise.all(this.#services.map((service) => service.shutdown()));
  }

  /** Stops every service at once; resolves once all have stopped. */
  async abort(): Promise<void> {
    await Promise.all(this.#services.map((service) => service.abort()));
  }
}

/** What a driver needs besides its listener: the sessions' shared context. */
export type ServiceOptions = SessionContext;

/** How long to stop accepting after accept fails (out of file descriptors). */
export const ACCEPT_PAUSE_MS = 100;

/**
 * Logs a failed accept (the caller pauses {@linkcode ACCEPT_PAUSE_MS} and
 * tries again): the first of an episode at once, then a count at most once
 * a minute, so that running out of descriptors does not also flood the log.
 * The metrics port (server/http.ts) logs its own so too.
 */
export function noteAcceptFailed(
  log: Logger,
  failures: FailureEpisode,
  now: number,
  fields: LogFields,
): void {
  const count = failures.failed(now);
  if (count === 0) return;
  log.error("accept failed; pausing accepts", {
    ...fields,
    pause_ms: ACCEPT_PAUSE_MS,
    count: count > 1 ? count : undefined,
  });
}

/** Logs the end of an episode of failed accepts, with how many there were, once it is over. */
export function noteAcceptsResumed(
  log: Logger,
  failures: FailureEpisode,
  now: number,
  fields: LogFields = {},
): void {
  if (!failures.ongoing) return;
  const count = failures.succeeded(now);
  if (count > 0) log.info("accepts resumed", { ...fields, failed_accepts: count });
}

/**
 * How often a driver looks for sessions whose deadline has passed, in
 * milliseconds: a few times per the shortest timeout, so a peer is closed at
 * most about a quarter late, at least every quarter of the linger time (so
 * lingering closes end on time), as often as the write timer probes what a
 * stalled peer acknowledged ({@linkcode WRITE_PROBES} per write timeout), and
 * at least every 10 ms.
 */
export function sweepInterval(limits: ServiceLimits): number {
  const timeouts = [limits.idleTimeoutMs, limits.frameTimeoutMs, limits.writeTimeoutMs, LINGER_MS]
    .filter((ms) => ms > 0);
  const probes = limits.writeTimeoutMs > 0 ? limits.writeTimeoutMs / WRITE_PROBES : Infinity;
  return Math.max(10, Math.min(1000, Math.floor(Math.min(Math.min(...timeouts) / 4, probes))));
}

/** The sweep interval while a shutdown drains: often enough for its grace period. */
export const DRAIN_SWEEP_MS = 20;
