/**
 * Per-client limits that hold across worker threads: `--rate-limit N/PERIOD`
 * (queries), `--found-limit N/PERIOD` (FOUND replies, the personal data
 * handed out) and `--max-connections-per-client N`. Pure: no socket, no
 * clock; the caller passes the time in milliseconds.
 *
 * ## Counting "at most N in any PERIOD"
 *
 * An exact sliding log keeps every query's time, which costs memory per
 * query. A fixed window (reset every minute) is cheap but lets 2N through
 * around a reset. Here each client has a sliding window of
 * {@linkcode SUB_BUCKETS} sub-buckets, each PERIOD / K wide, plus the
 * current one: a query at time t is admitted only when the queries counted
 * in the current sub-bucket and the K before it are fewer than N. Those
 * K + 1 sub-buckets cover more than the last PERIOD, so every query of the
 * last PERIOD is counted and the limit is never exceeded (bursts of up to N
 * at once are fine). The price is that a query is forgotten up to one
 * sub-bucket late: allowance comes back at most PERIOD / K (1/16 of the
 * period: 62.5 ms of `100/s`, 90 minutes of `1000/24h`) after an exact log
 * would give it back, never earlier. A window costs 17 counters and a
 * running total, and admitting a query touches two or three of them.
 *
 * The guarantee is in the time the callers pass, so every thread must
 * read one clock: `performance.timeOrigin + performance.now()` never goes
 * back within a thread, and threads agree on it to within how well the wall
 * clock was read when each started (`performance.now()` alone counts from
 * each worker's own start, and `Date.now()` jumps when the clock is set).
 * A time older than one already seen counts in the newest sub-bucket,
 * which is conservative; if threads' clocks differ by d, the bound holds
 * in any PERIOD - d.
 *
 * ## Sharing across threads
 *
 * A client's connections may be spread over several worker threads by the
 * kernel (SO_REUSEPORT), and they must share one allowance, so all state
 * lives in one SharedArrayBuffer that every worker maps, like the counters
 * in server/metrics.ts. Two kinds of lock guard it, each a 32-bit word used as a
 * mutex (access/shared_mutex.ts: one atomic operation to take it uncontended,
 * `Atomics.wait`/`notify` when contended):
 *
 * - the table lock, taken on connection open and close, guards the hash
 *   index, the recency list and connection counts;
 * - one lock per client, taken once on each query, guards that client's
 *   windows. A check-and-count is one short critical section, so two
 *   threads can never both take the last unit of allowance.
 *
 * The per-query path hashes nothing: {@linkcode ClientLimits.connectionOpened}
 * returns the client's slot, which the connection keeps. A slot is pinned
 * while any of its client's connections is open, so it cannot be reused
 * under a connection's feet.
 *
 * ## A bounded table
 *
 * At most `capacity` clients (100,000 by default, about 27 MB) are
 * tracked. A client with no open connection sits in a recency list ordered
 * by when its last connection closed; when the table is full, a new client
 * takes the slot of the least recently seen one that is at rest: whose
 * windows count nothing any more, so that forgetting it forgets nothing.
 * Forgetting a client whose counts still limit it would hand it a fresh
 * allowance, and an attacker who can show the server many identities
 * (addresses of 127.0.0.0/8, PROXY headers naming 10.x.y.z, the /64s of
 * an IPv6 /48) could reset its own limit by cycling through them. So a
 * client found not at rest is moved to the recent end of the list (a second
 * chance: it is looked at again only after every other idle client), and
 * after {@linkcode EVICTION_PROBES} such clients the new one is not given a
 * slot of its own: it shares the overflow slot, one more client whose
 * windows and connection count every such client shares, until a tracked
 * client comes to rest. Under that attack, new identities share one
 * allowance while every tracked client keeps its counts; a client that
 * later gets a slot of its own may have had up to one more allowance in
 * the shared one. Clients are found by a hash of their identity string (FNV-1a
 * with a random per-server seed, so that peers cannot aim at one chain),
 * and the identity's bytes are stored and compared, so two identities
 * whose hashes collide are still two clients. An identity longer than
 * {@linkcode KEY_BYTES} bytes (a long certificate subject) is stored as its
 * SHA-256.
 *
 * ```ts
 * import { ClientLimits, parseAllowance } from "./limits.ts";
 *
 * const limits = ClientLimits.create({ rate: parseAllowance("--rate-limit", "2/s") });
 * const now = 1_000_000;
 * const slot = limits.connectionOpened("192.0.2.7", now); // a slot, or a negative refusal
 * limits.admit(slot, now, true); // "ok": a FOUND reply may be sent
 * limits.admit(slot, now, false); // "ok": so may a NOT_FOUND
 * limits.admit(slot, now, true); // "rate_limited"
 * limits.admit(slot, now + 1000 + 1000 / 16, true); // "ok" again
 * limits.connectionClosed(slot);
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { UsageError } from "../common/cli_args.ts";
import { counted } from "../common/errors.ts";
import { lock, unlock } from "./shared_mutex.ts";

/** Sub-buckets per window: allowance comes back at most PERIOD / SUB_BUCKETS late. */
export const SUB_BUCKETS = 16;
/** Clients tracked at most, unless told otherwise. */
export const DEFAULT_CAPACITY = 100_000;
/** Identity bytes stored as they are; longer identities are stored as a SHA-256. */
export const KEY_BYTES = 64;
/** The largest N of `N/PERIOD`. */
export const MAX_ALLOWANCE_COUNT = 1_000_000_000;
/** The longest PERIOD of `N/PERIOD`: 365 days, in milliseconds. */
export const MAX_PERIOD_MS = 365 * 24 * 3600 * 1000;

/** {@linkcode ClientLimits.connectionOpened}: the client already has its maximum of connections. */
export const OVER_CONNECTION_LIMIT: number = -1;
/** Idle clients looked at, from the least recently seen, for one at rest to forget before a new client overflows. */
export const EVICTION_PROBES = 16;

/** What {@linkcode ClientLimits.admit} says about one query; the names match the refusal metric's labels. */
export type QueryVerdict = "ok" | "rate_limited" | "found_limit";

/** Why a client was refused with RATE_LIMITED: a query limit, or one connection too many. */
export type LimitRefusal = Exclude<QueryVerdict, "ok"> | "client_connections";

/** An allowance of `count` events in any `periodMs` milliseconds, from `N/PERIOD`. */
export interface Allowance {
  /** At most this many. */
  count: number;
  /** In any period of this many milliseconds. */
  periodMs: number;
}

/** Which limits apply; a limit left out is off. */
export interface ClientLimitsConfig {
  /** `--rate-limit`: queries per client. */
  rate?: Allowance;
  /** `--found-limit`: FOUND replies per client. */
  found?: Allowance;
  /** `--max-connections-per-client`: open connections per client; 0 or absent is no cap. */
  maxConnectionsPerClient?: number;
  /** Clients tracked at most; {@linkcode DEFAULT_CAPACITY} by default. */
  capacity?: number;
  /** The hash seed; random by default. Tests fix it to make collisions on purpose. */
  hashSeed?: number;
}

/** What a worker thread needs to share a {@linkcode ClientLimits}: send it with `postMessage`. */
export interface SharedClientLimits {
  /** The table, shared. */
  buffer: SharedArrayBuffer;
  /** The limits, as given to {@linkcode ClientLimits.create}. */
  config: ClientLimitsConfig;
}

/** Counts that describe the table, for tests and diagnostics (walks the whole table: not for a hot path). */
export interface TableCensus {
  /** Clients tracked. */
  tracked: number;
  /** Connections open on the overflow slot, shared by clients that found no slot of their own. */
  overflowConnections: number;
  /** Clients reachable through the hash index. */
  indexed: number;
  /** Distinct identities among those. */
  distinct: number;
  /** Clients in the recency list (those with no connection open). */
  idle: number;
  /** Connections open, summed over clients. */
  connections: number;
}

const PERIOD_UNITS_MS: Readonly<Record<string, number>> = {
  s: 1000,
  m: 60 * 1000,
  h: 3600 * 1000,
  d: 24 * 3600 * 1000,
};
const ALLOWANCE_PATTERN = /^(\d{1,10})\/(\d{0,10})([smhd])$/;

/**
 * Parses `N/PERIOD`: N from 1 to {@linkcode MAX_ALLOWANCE_COUNT}, PERIOD a
 * unit (`s`, `m`, `h`, `d`) with an optional count, at most 365 days.
 *
 * ```ts
 * import { parseAllowance } from "./limits.ts";
 * parseAllowance("--rate-limit", "100/s"); // { count: 100, periodMs: 1000 }
 * parseAllowance("--found-limit", "1000/24h"); // { count: 1000, periodMs: 86400000 }
 * ```
 *
 * @throws {UsageError} naming the flag and the value.
 */
export function parseAllowance(flag: string, value: string): Allowance {
  const match = ALLOWANCE_PATTERN.exec(value);
  const count = match ? Number(match[1]) : NaN;
  const periods = match ? (match[2] === "" ? 1 : Number(match[2])) : NaN;
  const periodMs = match ? periods * PERIOD_UNITS_MS[match[3]] : NaN;
  if (
    !(count >= 1 && count <= MAX_ALLOWANCE_COUNT && periods >= 1 && periodMs <= MAX_PERIOD_MS)
  ) {
    throw new UsageError(
      `${flag} must be N/PERIOD with N from 1 to ${MAX_ALLOWANCE_COUNT} and PERIOD s, m, h or d with an optional count up to 365 days (for example 100/s, 12/m or 1000/24h), not "${value}".`,
    );
  }
  return { count, periodMs };
}

function refusalTexts(config: ClientLimitsConfig): Record<LimitRefusal, string> {
  const { rate, found } = config;
  return {
    rate_limited: rate
      ? `This client asked more than ${counted(rate.count, "query", "queries")} in ${
        formatPeriod(rate.periodMs)
      } (--rate-limit); later queries are answered once it allows.`
      : "This client is over the server's query limit.",
    found_limit: found
      ? `This client received ${counted(found.count, "found reply", "found replies")} in ${
        formatPeriod(found.periodMs)
      } (--found-limit); every query is refused until it allows.`
      : "This client is over the server's found limit.",
    client_connections: `This client already has ${
      counted(config.maxConnectionsPerClient ?? 0, "connection")
    } open (--max-connections-per-client).`,
  };
}

/** A period in its largest whole unit: "1 s", "10 s", "1 min", "24 h" is "1 d". */
function formatPeriod(periodMs: number): string {
  const units: [number, string][] = [[PERIOD_UNITS_MS.d, "d"], [PERIOD_UNITS_MS.h, "h"], [
    PERIOD_UNITS_MS.m,
    "min",
  ], [PERIOD_UNITS_MS.s, "s"]];
  for (const [size, name] of units) {
    if (periodMs % size === 0) return `${periodMs / size} ${name}`;
  }
  return `${periodMs} ms`;
}

// --- Layout of the shared buffer ---

/** Control words: the table lock and the table's bookkeeping. */
const TABLE_LOCK = 0;
const TRACKED = 1;
const RECENT_HEAD = 2;
const RECENT_TAIL = 3;
const SEED = 4;
const CONTROL_INTS = 8;

/** Per client, in the entries array (guarded by the table lock). */
const HASH = 0;
const KEY_LENGTH = 1;
const CHAIN_NEXT = 2;
const RECENT_PREV = 3;
const RECENT_NEXT = 4;
const CONNECTIONS = 5;
const ENTRY_INTS = 6;

/**
 * Per client, in the windows array (guarded by the client's own lock): the
 * lock, then two windows, rate and found, each a running total, the ring
 * position of the newest sub-bucket, and the ring of sub-bucket counts.
 */
const CLIENT_LOCK = 0;
const RING = SUB_BUCKETS + 1;
const TOTAL = 0;
const POSITION = 1;
const RING_START = 2;
const WINDOW_SPAN = RING_START + RING;
const RATE_WINDOW = 1;
const FOUND_WINDOW = RATE_WINDOW + WINDOW_SPAN;
const WINDOW_INTS = 40;
/** Which window's head, in the heads array. */
const RATE_HEAD = 0;
const FOUND_HEAD = 1;

/** No slot: the end of a chain or of the recency list. */
const NONE = -1;
/** A hashed key starts with a byte that never occurs in UTF-8, so it cannot equal a plain one. */
const HASHED_KEY_MARK = 0xff;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

interface Layout {
  heads: number;
  control: number;
  entries: number;
  windows: number;
  buckets: number;
  keys: number;
  bytes: number;
  bucketCount: number;
}

/** The layout for `capacity` clients and the overflow slot, which is numbered `capacity`. */
function layout(capacity: number): Layout {
  const slots = capacity + 1;
  const bucketCount = 2 ** Math.ceil(Math.log2(capacity * 1.3));
  const heads = 0; // Float64: two window heads per client, first for alignment
  const control = heads + slots * 2 * 8;
  const entries = control + CONTROL_INTS * 4;
  const windows = entries + slots * ENTRY_INTS * 4;
  const buckets = windows + slots * WINDOW_INTS * 4;
  const keys = buckets + bucketCount * 4;
  return {
    heads,
    control,
    entries,
    windows,
    buckets,
    keys,
    bytes: keys + slots * KEY_BYTES,
    bucketCount,
  };
}

/**
 * Per-client limits over a table shared by every worker thread. Create it
 * once in the main thread, send {@linkcode shared} to each worker, and
 * {@linkcode attach} there.
 *
 * ```ts
 * import { ClientLimits } from "./limits.ts";
 *
 * const limits = ClientLimits.create({
 *   found: { count: 1000, periodMs: 24 * 3600 * 1000 },
 *   maxConnectionsPerClient: 10,
 * });
 * // worker.postMessage(limits.shared); and in the worker:
 * const same = ClientLimits.attach(limits.shared);
 * ```
 */
export class ClientLimits {
  /** The buffer and limits, to send to worker threads. */
  readonly shared: SharedClientLimits;
  /** Clients tracked at most. */
  readonly capacity: number;
  readonly #maxConnections: number;
  /** N of each limit; 0 when the limit is off. */
  readonly #rateCount: number;
  readonly #foundCount: number;
  /** Sub-bucket widths in milliseconds. */
  readonly #rateWidth: number;
  readonly #foundWidth: number;
  readonly #checks: boolean;
  readonly #heads: Float64Array;
  readonly #control: Int32Array;
  readonly #entries: Int32Array;
  readonly #windows: Int32Array;
  readonly #buckets: Int32Array;
  readonly #keys: Uint8Array;
  readonly #bucketMask: number;
  readonly #scratch = new Uint8Array(KEY_BYTES);
  #scratchLength = 0;
  readonly #texts: Readonly<Record<LimitRefusal, string>>;

  private constructor(shared: SharedClientLimits) {
    const { buffer, config } = shared;
    this.shared = shared;
    this.capacity = config.capacity ?? DEFAULT_CAPACITY;
    this.#maxConnections = config.maxConnectionsPerClient ?? 0;
    this.#rateCount = config.rate?.count ?? 0;
    this.#foundCount = config.found?.count ?? 0;
    this.#rateWidth = (config.rate?.periodMs ?? 1) / SUB_BUCKETS;
    this.#foundWidth = (config.found?.periodMs ?? 1) / SUB_BUCKETS;
    this.#checks = config.rate !== undefined || config.found !== undefined;
    this.#texts = refusalTexts(config);
    const at = layout(this.capacity);
    const slots = this.capacity + 1;
    this.#heads = new Float64Array(buffer, at.heads, slots * 2);
    this.#control = new Int32Array(buffer, at.control, CONTROL_INTS);
    this.#entries = new Int32Array(buffer, at.entries, slots * ENTRY_INTS);
    this.#windows = new Int32Array(buffer, at.windows, slots * WINDOW_INTS);
    this.#buckets = new Int32Array(buffer, at.buckets, at.bucketCount);
    this.#keys = new Uint8Array(buffer, at.keys, slots * KEY_BYTES);
    this.#bucketMask = at.bucketCount - 1;
  }

  /**
   * Makes the shared table for `config`.
   *
   * @throws {RangeError} when the capacity or a limit is out of range.
   */
  static create(config: ClientLimitsConfig): ClientLimits {
    const capacity = config.capacity ?? DEFAULT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 10_000_000) {
      throw new RangeError(`Client table capacity must be from 1 to 10000000, not ${capacity}.`);
    }
    const max = config.maxConnectionsPerClient ?? 0;
    if (!Number.isInteger(max) || max < 0) {
      throw new RangeError(`Connections per client must be a whole number, not ${max}.`);
    }
    for (const limit of [config.rate, config.found]) {
      if (
        limit && !(limit.count >= 1 && limit.count <= MAX_ALLOWANCE_COUNT && limit.periodMs > 0)
      ) {
        throw new RangeError(`Allowance ${limit.count} per ${limit.periodMs} ms is out of range.`);
      }
    }
    const buffer = new SharedArrayBuffer(layout(capacity).bytes);
    const limits = new ClientLimits({ buffer, config: { ...config } });
    limits.#buckets.fill(NONE);
    const control = limits.#control;
    control[RECENT_HEAD] = NONE;
    control[RECENT_TAIL] = NONE;
    control[SEED] = config.hashSeed ?? crypto.getRandomValues(new Int32Array(1))[0];
    return limits;
  }

  /** Maps a table made by {@linkcode create} in another thread. */
  static attach(shared: SharedClientLimits): ClientLimits {
    return new ClientLimits(shared);
  }

  /** The size in bytes of the shared table for `capacity` clients. */
  static tableBytes(capacity: number = DEFAULT_CAPACITY): number {
    return layout(capacity).bytes;
  }

  /** Clients tracked now, for the gauge. */
  get trackedClients(): number {
    return Atomics.load(this.#control, TRACKED);
  }

  /**
   * Counts a new connection of `identity` (see access/list.ts's
   * `clientIdentity`) at time `now` (ms, the clock of {@linkcode admit}).
   * Returns the client's slot, which the connection keeps for
   * {@linkcode admit} and {@linkcode connectionClosed}: its own, or the
   * overflow slot when the table is full and no idle client is at rest; or,
   * refusing the connection, {@linkcode OVER_CONNECTION_LIMIT} when the
   * client (or the overflow slot) already has `maxConnectionsPerClient`
   * open. A refused connection is not counted and must not be closed here.
   */
  connectionOpened(identity: string, now: number): number {
    const hash = this.#hashIdentity(identity);
    const control = this.#control;
    lock(control, TABLE_LOCK);
    try {
      const found = this.#find(hash);
      if (found !== NONE) return this.#addConnection(found);
      const slot = this.#freeSlot(now);
      return slot === NONE ? this.#addConnection(this.capacity) : this.#insert(slot, hash);
    } finally {
      unlock(control, TABLE_LOCK);
    }
  }

  /** Counts the end of a connection that {@linkcode connectionOpened} accepted. */
  connectionClosed(slot: number): void {
    const entries = this.#entries;
    const at = slot * ENTRY_INTS;
    lock(this.#control, TABLE_LOCK);
    try {
      if (entries[at + CONNECTIONS] <= 0) {
        throw new RangeError(`Client slot ${slot} has no open connection to close.`);
      }
      if (--entries[at + CONNECTIONS] === 0 && slot !== this.capacity) this.#pushRecent(slot);
    } finally {
      unlock(this.#control, TABLE_LOCK);
    }
  }

  /** Connections open now for the client in `slot`. */
  connections(slot: number): number {
    return Atomics.load(this.#entries, slot * ENTRY_INTS + CONNECTIONS);
  }

  /**
   * Decides one query of the client in `slot` at time `now` (ms), once its
   * answer is known: `found` when the answer would be a FOUND reply. Over
   * the found limit every query is refused, misses included, so that a
   * client cannot test which addresses exist; otherwise the query takes one
   * unit of the rate allowance, and a FOUND reply one unit of the found
   * allowance too. A refused query takes nothing. Checking and taking are
   * one critical section under the client's lock, so connections in several
   * threads together never get more than an allowance.
   */
  admit(slot: number, now: number, found: boolean): QueryVerdict {
    if (!this.#checks) return "ok";
    const windows = this.#windows;
    const base = slot * WINDOW_INTS;
    const foundWindow = base + FOUND_WINDOW;
    lock(windows, base + CLIENT_LOCK);
    let verdict: QueryVerdict = "ok";
    if (
      this.#foundCount > 0 &&
      this.#used(foundWindow, slot * 2 + FOUND_HEAD, this.#foundWidth, now) >= this.#foundCount
    ) {
      verdict = "found_limit";
    } else if (
      this.#rateCount > 0 &&
      !this.#take(base + RATE_WINDOW, slot * 2 + RATE_HEAD, this.#rateWidth, this.#rateCount, now)
    ) {
      verdict = "rate_limited";
    } else if (found && this.#foundCount > 0) {
      this.#count(foundWindow); // #used above moved this window to now and found room
    }
    unlock(windows, base + CLIENT_LOCK);
    return verdict;
  }

  /**
   * Decides one query that would return `wanted` entries (an LDAP search),
   * as {@linkcode admit} decides one that returns at most one: refused over
   * the found limit or the rate limit; otherwise the query takes one unit of
   * the rate allowance, and the entries as many units of the found allowance
   * as remain. Returns how many of the entries may be returned (0 to
   * `wanted`), or the refusal.
   */
  admitEntries(
    slot: number,
    now: number,
    wanted: number,
  ): number | Exclude<QueryVerdict, "ok"> {
    if (!this.#checks) return wanted;
    const windows = this.#windows;
    const base = slot * WINDOW_INTS;
    const foundWindow = base + FOUND_WINDOW;
    lock(windows, base + CLIENT_LOCK);
    let verdict: number | Exclude<QueryVerdict, "ok"> = wanted;
    const used = this.#foundCount > 0
      ? this.#used(foundWindow, slot * 2 + FOUND_HEAD, this.#foundWidth, now)
      : 0;
    if (this.#foundCount > 0 && used >= this.#foundCount) {
      verdict = "found_limit";
    } else if (
      this.#rateCount > 0 &&
      !this.#take(base + RATE_WINDOW, slot * 2 + RATE_HEAD, this.#rateWidth, this.#rateCount, now)
    ) {
      verdict = "rate_limited";
    } else if (this.#foundCount > 0) {
      verdict = Math.min(wanted, this.#foundCount - used);
      this.#count(foundWindow, verdict);
    }
    unlock(windows, base + CLIENT_LOCK);
    return verdict;
  }

  /**
   * The text of the RATE_LIMITED reply for a refusal: one sentence naming
   * the limit and its flag, never the client's query.
   *
   * ```ts
   * import { ClientLimits } from "./limits.ts";
   * const limits = ClientLimits.create({ rate: { count: 12, periodMs: 60_000 } });
   * limits.refusalText("rate_limited");
   * // "This client asked more than 12 queries in 1 min (--rate-limit); later queries are answered once it allows."
   * ```
   */
  refusalText(reason: LimitRefusal): string {
    return this.#texts[reason];
  }

  /** Walks the whole table and counts what it holds, for tests and diagnostics. */
  census(): TableCensus {
    const control = this.#control;
    lock(control, TABLE_LOCK);
    try {
      const keys = new Set<string>();
      let indexed = 0;
      let connections = 0;
      for (let bucket = 0; bucket <= this.#bucketMask; bucket++) {
        for (
          let slot = this.#buckets[bucket];
          slot !== NONE;
          slot = this.#entry(slot, CHAIN_NEXT)
        ) {
          indexed++;
          connections += this.#entry(slot, CONNECTIONS);
          const start = slot * KEY_BYTES;
          keys.add(this.#keys.slice(start, start + this.#entry(slot, KEY_LENGTH)).join());
        }
      }
      let idle = 0;
      for (let slot = control[RECENT_HEAD]; slot !== NONE; slot = this.#entry(slot, RECENT_NEXT)) {
        idle++;
      }
      return {
        tracked: control[TRACKED],
        overflowConnections: this.#entry(this.capacity, CONNECTIONS),
        indexed,
        distinct: keys.size,
        idle,
        connections,
      };
    } finally {
      unlock(control, TABLE_LOCK);
    }
  }

  // --- The table (under the table lock) ---

  #entry(slot: number, field: number): number {
    return this.#entries[slot * ENTRY_INTS + field];
  }

  #setEntry(slot: number, field: number, value: number): void {
    this.#entries[slot * ENTRY_INTS + field] = value;
  }

  /** Encodes the identity into the scratch key and hashes it. */
  #hashIdentity(identity: string): number {
    const scratch = this.#scratch;
    const { read, written } = encoder.encodeInto(identity, scratch);
    if (read === identity.length) {
      this.#scratchLength = written;
    } else {
      scratch[0] = HASHED_KEY_MARK;
      scratch.set(createHash("sha256").update(identity).digest(), 1);
      this.#scratchLength = 33;
    }
    let hash = (FNV_OFFSET ^ this.#control[SEED]) >>> 0;
    for (let i = 0; i < this.#scratchLength; i++) {
      hash = Math.imul(hash ^ scratch[i], FNV_PRIME) >>> 0;
    }
    return hash | 0;
  }

  #find(hash: number): number {
    for (
      let slot = this.#buckets[hash & this.#bucketMask];
      slot !== NONE;
      slot = this.#entry(slot, CHAIN_NEXT)
    ) {
      if (this.#entry(slot, HASH) === hash && this.#keyEquals(slot)) return slot;
    }
    return NONE;
  }

  #keyEquals(slot: number): boolean {
    const length = this.#scratchLength;
    if (this.#entry(slot, KEY_LENGTH) !== length) return false;
    const keys = this.#keys;
    const start = slot * KEY_BYTES;
    for (let i = 0; i < length; i++) if (keys[start + i] !== this.#scratch[i]) return false;
    return true;
  }

  #addConnection(slot: number): number {
    const connections = this.#entry(slot, CONNECTIONS);
    if (this.#maxConnections > 0 && connections >= this.#maxConnections) {
      return OVER_CONNECTION_LIMIT;
    }
    if (connections === 0 && slot !== this.capacity) this.#unlinkRecent(slot);
    this.#setEntry(slot, CONNECTIONS, connections + 1);
    return slot;
  }

  /**
   * A slot for a new client: an unused one while the table fills, then the
   * least recently seen idle client's if it is at rest (forgotten here);
   * NONE when {@linkcode EVICTION_PROBES} idle clients were not at rest.
   */
  #freeSlot(now: number): number {
    const control = this.#control;
    if (control[TRACKED] < this.capacity) {
      const slot = control[TRACKED];
      Atomics.store(control, TRACKED, slot + 1);
      return slot;
    }
    for (let probe = 0; probe < EVICTION_PROBES; probe++) {
      const slot = control[RECENT_TAIL];
      if (slot === NONE) return NONE;
      this.#unlinkRecent(slot);
      if (this.#atRest(slot, now)) {
        this.#unlinkChain(slot);
        this.#clearWindows(slot);
        return slot;
      }
      this.#pushRecent(slot); // its second chance: the next probe looks at another client
    }
    return NONE;
  }

  /**
   * Whether an idle client's windows count nothing at `now`, so that
   * forgetting it gives it nothing. No connection holds an idle slot, so
   * moving its windows needs no client lock.
   */
  #atRest(slot: number, now: number): boolean {
    const base = slot * WINDOW_INTS;
    return (this.#rateCount === 0 ||
      this.#used(base + RATE_WINDOW, slot * 2 + RATE_HEAD, this.#rateWidth, now) === 0) &&
      (this.#foundCount === 0 ||
        this.#used(base + FOUND_WINDOW, slot * 2 + FOUND_HEAD, this.#foundWidth, now) === 0);
  }

  #insert(slot: number, hash: number): number {
    this.#setEntry(slot, HASH, hash);
    this.#setEntry(slot, KEY_LENGTH, this.#scratchLength);
    this.#keys.set(this.#scratch.subarray(0, this.#scratchLength), slot * KEY_BYTES);
    const bucket = hash & this.#bucketMask;
    this.#setEntry(slot, CHAIN_NEXT, this.#buckets[bucket]);
    this.#buckets[bucket] = slot;
    this.#setEntry(slot, CONNECTIONS, 1);
    return slot;
  }

  #unlinkChain(slot: number): void {
    const bucket = this.#entry(slot, HASH) & this.#bucketMask;
    const next = this.#entry(slot, CHAIN_NEXT);
    if (this.#buckets[bucket] === slot) {
      this.#buckets[bucket] = next;
      return;
    }
    let previous = this.#buckets[bucket];
    while (this.#entry(previous, CHAIN_NEXT) !== slot) previous = this.#entry(previous, CHAIN_NEXT);
    this.#setEntry(previous, CHAIN_NEXT, next);
  }

  /** Puts a client whose last connection closed at the most recent end of the recency list. */
  #pushRecent(slot: number): void {
    const control = this.#control;
    const head = control[RECENT_HEAD];
    this.#setEntry(slot, RECENT_PREV, NONE);
    this.#setEntry(slot, RECENT_NEXT, head);
    if (head === NONE) control[RECENT_TAIL] = slot;
    else this.#setEntry(head, RECENT_PREV, slot);
    control[RECENT_HEAD] = slot;
  }

  #unlinkRecent(slot: number): void {
    const control = this.#control;
    const previous = this.#entry(slot, RECENT_PREV);
    const next = this.#entry(slot, RECENT_NEXT);
    if (previous === NONE) control[RECENT_HEAD] = next;
    else this.#setEntry(previous, RECENT_NEXT, next);
    if (next === NONE) control[RECENT_TAIL] = previous;
    else this.#setEntry(next, RECENT_PREV, previous);
  }

  /** Forgets an evicted client's counts; no connection holds its slot, so no client lock is needed. */
  #clearWindows(slot: number): void {
    const start = slot * WINDOW_INTS;
    this.#windows.fill(0, start + RATE_WINDOW, start + WINDOW_INTS);
    this.#heads[slot * 2 + RATE_HEAD] = 0;
    this.#heads[slot * 2 + FOUND_HEAD] = 0;
  }

  // --- The windows (under the client's lock) ---

  /** Moves the window at `window` to the sub-bucket of `now`, and returns its count. */
  #used(window: number, headAt: number, width: number, now: number): number {
    const bucket = Math.floor(now / width);
    const head = this.#heads[headAt];
    if (bucket > head) {
      this.#advance(window, head, bucket);
      this.#heads[headAt] = bucket;
    }
    return this.#windows[window + TOTAL];
  }

  /** Drops the counts of the sub-buckets that fell out of the window between `head` and `bucket`. */
  #advance(window: number, head: number, bucket: number): void {
    const windows = this.#windows;
    if (bucket - head >= RING) {
      windows.fill(0, window, window + WINDOW_SPAN);
      return;
    }
    let position = windows[window + POSITION];
    let total = windows[window + TOTAL];
    for (let b = head; b < bucket; b++) {
      position = position === RING - 1 ? 0 : position + 1;
      total -= windows[window + RING_START + position];
      windows[window + RING_START + position] = 0;
    }
    windows[window + TOTAL] = total;
    windows[window + POSITION] = position;
  }

  /** Counts one event in the window unless it is full; false when full. */
  #take(window: number, headAt: number, width: number, count: number, now: number): boolean {
    if (this.#used(window, headAt, width, now) >= count) return false;
    this.#count(window);
    return true;
  }

  /** Counts `events` (one by default) in the newest sub-bucket of a window already moved to now. */
  #count(window: number, events = 1): void {
    const windows = this.#windows;
    windows[window + RING_START + windows[window + POSITION]] += events;
    windows[window + TOTAL] += events;
  }
}
