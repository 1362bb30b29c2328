/**
 * The messages between the main thread and a serving thread
 * (server/worker.ts). They live apart from both, so that the main thread
 * can speak to its workers without importing a worker's code, and a worker
 * without importing the main thread's.
 *
 * @module
 */

import type { AccessRules } from "../access/policy.ts";
import { AddressBook, type SharedAddressBook } from "../book/addressbook.ts";
import { type SharedTextIndex, TextIndex } from "../book/text_index.ts";
import type { SharedClientLimits } from "../access/limits.ts";
import type { LogLevel, LogRecord } from "../common/log.ts";
import type { ServiceLimits } from "../session/session.ts";
import type { PortSharing } from "./listen.ts";
import type { TlsFiles } from "../transport/tls_context.ts";

/** The event loop a thread serves with: its own epoll loop, or Deno.listen's. */
export type IoKind = "epoll" | "deno";

/** The LDAP front end's ports and directory (`--ldap-port`, `--ldaps-port`, `--ldap-base`). */
export interface LdapListen {
  /** Plain LDAP's port, when served (0 only for the first thread). */
  port?: number;
  /** LDAP over TLS's port, when served (0 only for the first thread). */
  tlsPort?: number;
  /** The directory's suffix. */
  base: string;
  /** The most entries one search returns. */
  sizeLimit: number;
}

/** Everything a serving thread needs, sent once at its start. */
export interface WorkerStart extends PostedBook {
  /** Marks the first message a worker gets. */
  kind: "start";
  /** The event loop to serve with. */
  io: IoKind;
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on (0 only for the first thread). */
  port: number;
  /** How this thread binds: alone, first of several, or joining. */
  sharing: PortSharing;
  /** TLS certificate and key, when serving TLS. */
  tls: TlsFiles | undefined;
  /** The LDAP ports, when LDAP is served beside the binary protocol. */
  ldap?: LdapListen;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** Who may query, as the command line said; absent when everyone may. */
  access?: AccessRules;
  /** The per-client limits' shared table, when any limit is set. */
  clientLimits?: SharedClientLimits;
  /** The shared counter table; this thread counts into its row. */
  counters: Float64Array;
  /** This thread's row in the counter table. */
  thread: number;
  /** Open connections across all threads, updated atomically. */
  openConnections: Int32Array;
  /** The main thread's log level; records are sent to it to be written. */
  logLevel: LogLevel;
  /** Set by startWorker: how many commands the main thread has posted. */
  mailbox?: Int32Array;
}

/** Messages from the main thread to a worker. */
export type WorkerCommand =
  | WorkerStart
  | ({ kind: "book" } & PostedBook)
  /** New TLS certificate, key and client CA for new connections (rotation). */
  | { kind: "tls"; tls: TlsFiles }
  | { kind: "shutdown" }
  | { kind: "abort" };

/** Messages from a worker to the main thread. */
export type WorkerReport =
  /** The ports bound: the binary protocol's, then LDAP's and LDAPS's when served. */
  | { kind: "listening"; port: number; ldapPort?: number; ldapsPort?: number }
  | { kind: "failed"; message: string; exitCode: number }
  | { kind: "log"; record: LogRecord }
  | { kind: "book-taken" }
  /** The TLS files were applied, or (having logged why) the old ones kept. */
  | { kind: "tls-taken" }
  | { kind: "drained" }
  | { kind: "stopped" };

/** A book as a thread posts it: its shared buffers, and its substring index's when it has one. */
export interface PostedBook {
  /** The book's shared buffers. */
  book: SharedAddressBook;
  /** The index built once for it (where LDAP is served), so that no thread builds its own. */
  textIndex?: SharedTextIndex;
}

/** What to post of `book`: its buffers and, when one is attached, its index's (not copied). */
export function postBook(book: AddressBook): PostedBook {
  return { book: book.toShared(), textIndex: TextIndex.attachedTo(book)?.toShared() };
}

/** The book a thread received, with the index that came with it attached. */
export function receiveBook(posted: PostedBook): AddressBook {
  const book = AddressBook.fromShared(posted.book);
  if (posted.textIndex !== undefined) {
    TextIndex.attach(book, TextIndex.fromShared(posted.textIndex));
  }
  return book;
}
