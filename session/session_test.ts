/**
 * Tests of the session layer on its own: no sockets, no timers, time passed
 * in by hand. A small harness plays the driver (it reuses one input buffer,
 * as the epoll driver does, and writes as much as a test says), with a real
 * book, a real logger writing to an array and a real row of counters.
 *
 * The last tests are properties: random event sequences against a simple
 * model of the reply stream, and the deadline checked at every tick.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { AccessPolicy, type AccessRules } from "../access/policy.ts";
import { Logger } from "../common/log.ts";
import { RepeatSummary } from "../common/log_repeats.ts";
import { Counter, COUNTERS_PER_THREAD, outcomeCounters } from "./counters.ts";
import {
  decodeReply,
  encodeQueries,
  encodeQuery,
  encodeReply,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  MAX_REPLY_BYTES,
  type Reply,
  type Status,
  STATUS_BAD_REQUEST,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
  TYPE_REPLY,
} from "../protocol.ts";
import { BINARY_FRONT_END, BUSY_REPLY, statusOutcome } from "../wire/binary.ts";
import {
  type CloseReason,
  DRAIN_GRACE_MS,
  DRAIN_READ_MS,
  LINGER_MS,
  type ServiceLimits,
  Session,
  type SessionContext,
  type SessionPhase,
  WRITE_PROBES,
} from "./session.ts";
import { encodeProxyHeader } from "../access/proxy_header.ts";
import type { TlsFailure } from "./handshake.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import { concat, frame, header } from "../testing/frames.ts";
import { modelReplies, type ModelReply, streamPiece } from "../testing/model.ts";

/** The peer every session here serves, as the logs must show it. */
const PEER_ADDRESS = { hostname: "127.0.0.2", port: 40000 };
const PEER = "127.0.0.2:40000";
/** Any clock origin: sessions only compare times they were given. */
const START = 1_000_000;
/** The size of the harness's one input buffer, as large as the epoll driver's. */
const INPUT_BYTES = 65536;
/** A byte the harness fills its input buffer with after each receive: not a frame type. */
const STALE_BYTE = 0xee;
/** Longer than any one reply frame from the {@linkcode PEOPLE} book (the model checks it). */
const LONGEST_REPLY_FRAME = 128;

/** Limits that keep every timeout off unless a test turns one on. */
const NO_TIMEOUTS: ServiceLimits = {
  maxConnections: 100,
  idleTimeoutMs: 0,
  frameTimeoutMs: 0,
  writeTimeoutMs: 0,
  maxPendingWrite: 1 << 20,
};

const encoder = new TextEncoder();

interface HarnessOptions {
  /** The count of open connections, shared by sessions that should see each other. */
  openConnections?: Int32Array;
  /** The book's people; {@linkcode PEOPLE} by default. */
  people?: readonly (readonly [string, string])[];
  /** Access rules; none by default. */
  access?: AccessRules;
  /** What the peer's TCP has acknowledged, as a transport tells; none by default. */
  acked?: () => number;
}

/** One session and a driver played by hand: the clock, the input buffer, the replies read. */
class Harness {
  readonly context: SessionContext;
  readonly lines: string[] = [];
  readonly session: Session;
  now = START;
  /** How often the session asked for the peer's address. */
  peerCalls = 0;
  /** Replies the peer has read, in order. */
  readonly replies: Reply[] = [];
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #input = new Uint8Array(INPUT_BYTES);

  constructor(limits: Partial<ServiceLimits> = {}, options: HarnessOptions = {}) {
    const counters = new Float64Array(COUNTERS_PER_THREAD);
    this.context = {
      frontEnd: BINARY_FRONT_END,
      outcomes: outcomeCounters(counters, BINARY_FRONT_END.name),
      book: makeBook(options.people),
      limits: { ...NO_TIMEOUTS, ...limits },
      counters,
      openConnections: options.openConnections ?? new Int32Array(new SharedArrayBuffer(4)),
      log: new Logger({ level: "debug", write: (line) => this.lines.push(line) }),
      refusals: new RepeatSummary(),
      access: options.access && AccessPolicy.fromRules(options.access),
    };
    this.session = new Session(this.context, this.now, () => {
      this.peerCalls++;
      return PEER_ADDRESS;
    }, options.acked);
  }

  /** Moves the clock to `time`; a test's events happen in time order. */
  at(time: number): this {
    assert.ok(time >= this.now, `time goes forward: ${time} after ${this.now}`);
    this.now = time;
    return this;
  }

  /**
   * Delivers `bytes` as one read through the shared input buffer, then
   * overwrites the buffer, as the next read on another connection would:
   * the session may not keep a view of it.
   */
  send(bytes: Uint8Array): void {
    assert.ok(bytes.length <= INPUT_BYTES, "one read fits the input buffer");
    this.#input.set(bytes);
    this.session.receive(this.#input, bytes.length, this.now);
    this.#input.fill(STALE_BYTE);
  }

  /** Delivers `bytes` in reads of `size` bytes. */
  sendInPieces(bytes: Uint8Array, size: number): void {
    for (let at = 0; at < bytes.length; at += size) this.send(bytes.subarray(at, at + size));
  }

  /** The peer's FIN. */
  end(): void {
    this.session.receiveEnd(this.now);
  }

  /** Writes up to `max` bytes of the output to the peer, which reads them; returns how many. */
  read(max = Infinity): number {
    const count = Math.min(max, this.session.outputLength);
    if (count <= 0) return 0;
    const bytes = this.session.outputBytes.slice(0, count);
    this.session.wrote(count, this.now);
    this.#decoder.push(bytes);
    for (let payload; (payload = this.#decoder.next()) !== null;) {
      this.replies.push(decodeReply(payload));
    }
    return count;
  }

  /** Writes everything due, including replies to frames held back, in writes of `size` bytes. */
  readAll(size = Infinity): void {
    for (let i = 0; i < 1_000_000 && this.session.outputLength > 0; i++) this.read(size);
    assert.equal(this.session.outputLength, 0, "the output ran dry");
  }

  /** Half-closes as a driver does when the session asks; returns whether it asked. */
  halfClose(): boolean {
    if (!this.session.wantsHalfClose) return false;
    this.session.halfClosed(this.now);
    return true;
  }

  /** Moves the clock to `time` and ticks. */
  tick(time: number): void {
    this.at(time);
    this.session.tick(this.now);
  }

  /** Statuses of the replies read. */
  get statuses(): number[] {
    return this.replies.map((reply) => reply.status);
  }

  /** The shared count of open connections. */
  get open(): number {
    return Atomics.load(this.context.openConnections, 0);
  }

  counter(index: number): number {
    return this.context.counters[index];
  }

  replyCount(status: Status): number {
    return this.context.outcomes[statusOutcome(status)];
  }

  /** Lines logged that mention `text`. */
  logged(text: string): string[] {
    return this.lines.filter((line) => line.includes(text));
  }
}

/** Everything a driver can see of a session, to compare before and after a tick. */
function visible(harness: Harness) {
  const { session } = harness;
  return {
    phase: session.phase,
    closeReason: session.closeReason,
    outputLength: session.outputLength,
    output: session.outputBytes.slice(0, session.outputLength),
    wantsRead: session.wantsRead,
    wantsHalfClose: session.wantsHalfClose,
    deadline: session.deadline,
    counters: [...harness.context.counters],
    open: harness.open,
  };
}

/** A shared count of open connections starting at `count`. */
function openCount(count: number): Int32Array {
  const open = new Int32Array(new SharedArrayBuffer(4));
  open[0] = count;
  return open;
}

function comparable(replies: readonly (Reply | ModelReply)[]): ModelReply[] {
  return replies.map(({ status, text }) => status === STATUS_FOUND ? { status, text } : { status });
}

const ADA = PEOPLE[0];
const GRACE = PEOPLE[1];
/** A found, a missing and a malformed query. */
const THREE = encodeQueries([ADA[0], "nobody@example.com", "not an email"]);
const THREE_STATUSES = [STATUS_FOUND, STATUS_NOT_FOUND, STATUS_BAD_REQUEST];

// --- Admission and the connection slot ---

/** Limits for the close paths: each timeout on, and different. */
const CLOSE_LIMITS = { idleTimeoutMs: 300, frameTimeoutMs: 200, writeTimeoutMs: 100 };

/** Every way a session closes, and how to get it there from a fresh session at START. */
const CLOSE_PATHS: [string, CloseReason, (h: Harness) => void][] = [
  ["the peer's EOF while open", "peer-closed", (h) => h.end()],
  ["the peer's EOF with replies owed, once written", "peer-closed", (h) => {
    h.send(THREE);
    h.end();
    assert.equal(h.session.phase, "ending");
    h.readAll();
  }],
  ["the peer's EOF while lingering after a protocol error", "peer-closed", (h) => {
    h.send(Uint8Array.of(0x47));
    h.readAll();
    assert.ok(h.halfClose());
    assert.equal(h.session.phase, "lingering");
    h.end();
  }],
  ["the linger time running out", "linger-over", (h) => {
    h.send(Uint8Array.of(0x47));
    h.readAll();
    assert.ok(h.halfClose());
    h.tick(START + LINGER_MS);
  }],
  ["a drain, then the peer's EOF", "peer-closed", (h) => {
    h.session.drain(START);
    h.tick(START + DRAIN_GRACE_MS);
    h.readAll();
    h.halfClose();
    h.end();
  }],
  ["a drain, then the linger time running out", "linger-over", (h) => {
    h.session.drain(START);
    h.tick(START + DRAIN_GRACE_MS);
    h.readAll();
    assert.ok(h.halfClose());
    h.tick(h.now + LINGER_MS);
  }],
  ["the idle timeout", "idle-timeout", (h) => h.tick(START + 300)],
  ["the frame timeout", "frame-timeout", (h) => {
    h.send(THREE.subarray(0, 3));
    h.tick(START + 200);
  }],
  ["the write timeout", "write-timeout", (h) => {
    h.send(THREE);
    h.tick(START + 100);
  }],
  ["an abort", "aborted", (h) => h.session.abort()],
];

for (const [how, reason, close] of CLOSE_PATHS) {
  Deno.test(`a session gives its connection slot back exactly once when closed by ${how}`, () => {
    // Four other sessions hold slots: only this one's may be given back.
    const h = new Harness(CLOSE_LIMITS, { openConnections: openCount(4) });
    assert.equal(h.session.phase, "open");
    assert.equal(h.open, 5, "the slot is taken at once");
    assert.equal(h.counter(Counter.connectionsOpen), 1);
    assert.equal(h.counter(Counter.connectionsTotal), 1);
    close(h);
    assert.equal(h.session.phase, "closed");
    assert.ok(h.session.closed);
    assert.equal(h.session.closeReason, reason);
    assert.equal(h.open, 4, "the slot is given back");
    assert.equal(h.counter(Counter.connectionsOpen), 0);
    assertClosedForGood(h, reason);
    assert.equal(h.open, 4, "the slot is given back only once");
    assert.equal(h.counter(Counter.connectionsOpen), 0);
  });
}

/** Everything a driver might still do to a closed session changes nothing. */
function assertClosedForGood(h: Harness, reason: CloseReason): void {
  const before = visible(h);
  h.send(encodeQuery(ADA[0]));
  h.end();
  h.session.wrote(10, h.now);
  h.session.halfClosed(h.now);
  h.session.drain(h.now);
  h.tick(h.now + 10 * LINGER_MS);
  h.session.abort();
  assert.deepEqual(visible(h), before);
  assert.equal(h.session.closeReason, reason);
  assert.equal(h.session.outputLength, 0);
  assert.equal(h.session.wantsRead, false);
  assert.equal(h.session.wantsHalfClose, false);
  assert.equal(h.session.deadline, Infinity);
}

for (const [how, reason, close] of CLOSE_PATHS) {
  // A refused session reads nothing and only waits on its reply: no idle, frame or drain close.
  if (reason === "frame-timeout" || reason === "idle-timeout" || how.startsWith("a drain")) {
    continue;
  }
  Deno.test(`a refused session takes no slot and gives none back when closed by ${how}`, () => {
    const h = new Harness({ ...CLOSE_LIMITS, maxConnections: 2 }, {
      openConnections: openCount(2),
    });
    assert.equal(h.session.phase, "ending");
    assert.equal(h.open, 2, "the count is back at the limit");
    assert.equal(h.counter(Counter.connectionsOpen), 0);
    assert.equal(h.counter(Counter.connectionsTotal), 1);
    // The paths that send first expect to be answered; a refused session answers nothing.
    if (how.includes("protocol error") || how.includes("linger")) {
      h.readAll();
      assert.ok(h.halfClose());
      if (reason === "linger-over") h.tick(h.now + LINGER_MS);
      else h.end();
    } else if (reason === "write-timeout") {
      h.tick(START + 100);
    } else {
      close(h);
      h.readAll();
    }
    assert.equal(h.session.closeReason, reason);
    assert.equal(h.open, 2);
    assert.equal(h.counter(Counter.connectionsOpen), 0);
    assertClosedForGood(h, reason);
    assert.equal(h.open, 2);
  });
}

Deno.test("a session over maxConnections answers SERVER_BUSY, reads nothing, then lingers", () => {
  const h = new Harness({ maxConnections: 3 }, { openConnections: openCount(3) });
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.wantsRead, false);
  assert.equal(h.session.wantsHalfClose, false, "the reply goes first");
  assert.deepEqual(h.session.outputBytes.slice(0, h.session.outputLength), BUSY_REPLY);
  assert.equal(h.counter(Counter.busyRefusals), 1);
  assert.equal(h.replyCount(STATUS_SERVER_BUSY), 1);
  const [line] = h.logged("connection refused: server busy");
  assert.match(line, /\bwarn\b/);
  assert.ok(line.includes(`peer=${PEER}`), line);

  h.send(encodeQuery(ADA[0])); // a driver would not read; if it did, nothing is answered
  h.read(7);
  h.readAll(7);
  assert.deepEqual(h.statuses, [STATUS_SERVER_BUSY]);
  assert.match(h.replies[0].text, /connection limit/);
  assert.ok(h.halfClose());
  assert.equal(h.session.phase, "lingering");
  assert.equal(h.session.wantsRead, true, "what still arrives is read and dropped");
  h.send(encodeQuery(ADA[0]));
  assert.equal(h.session.outputLength, 0);
  assert.equal(h.session.deadline, START + LINGER_MS);
  h.end();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.equal(h.open, 3);
  assert.equal(h.replyCount(STATUS_FOUND), 0);
});

Deno.test("sessions sharing a count admit again once one of them closes", () => {
  const shared = { openConnections: openCount(0) };
  const first = new Harness({ maxConnections: 2 }, shared);
  const second = new Harness({ maxConnections: 2 }, shared);
  const third = new Harness({ maxConnections: 2 }, shared);
  assert.deepEqual([first, second, third].map((h) => h.session.phase), ["open", "open", "ending"]);
  assert.equal(first.open, 2);
  third.readAll();
  third.halfClose();
  third.end();
  assert.equal(first.open, 2, "closing a refused session frees no slot");
  second.session.abort();
  assert.equal(first.open, 1);
  const fourth = new Harness({ maxConnections: 2 }, shared);
  assert.equal(fourth.session.phase, "open");
  assert.equal(first.open, 2);
});

// --- Answers ---

Deno.test("a session answers each complete frame from the book, in order", () => {
  const h = new Harness();
  const queries = [...PEOPLE.map(([email]) => ` ${email.toUpperCase()}\t`), "nobody@example.com"];
  h.send(concat([encodeQueries(queries), frame(TYPE_QUERY, Uint8Array.of(0xff))]));
  h.readAll();
  assert.deepEqual(h.replies, [
    ...PEOPLE.map(([, name]) => ({ status: STATUS_FOUND, text: name })),
    { status: STATUS_NOT_FOUND, text: "No entry for that address." },
    { status: STATUS_BAD_REQUEST, text: "The query is not valid UTF-8." },
  ]);
  assert.equal(h.replyCount(STATUS_FOUND), PEOPLE.length);
  assert.equal(h.replyCount(STATUS_NOT_FOUND), 1);
  assert.equal(h.replyCount(STATUS_BAD_REQUEST), 1);
  assert.equal(h.session.phase, "open");
  assert.equal(h.session.wantsRead, true);
  assert.equal(h.peerCalls, 0, "the peer's address is only formatted for a log line");
  assert.deepEqual(h.lines, []);
});

Deno.test("a session answers from the book its context holds now", () => {
  const h = new Harness();
  h.send(encodeQuery(ADA[0]));
  h.context.book = makeBook([[ADA[0], "Ada King"]]);
  h.send(encodeQuery(ADA[0]));
  h.readAll();
  assert.deepEqual(h.replies.map((reply) => reply.text), [ADA[1], "Ada King"]);
});

Deno.test("a stream split at any two places gets the same replies", () => {
  const stream = concat([THREE, encodeQuery(GRACE[0])]);
  const expected = [...THREE_STATUSES, STATUS_FOUND];
  for (let first = 0; first <= stream.length; first++) {
    for (let second = first; second <= stream.length; second++) {
      const h = new Harness();
      h.send(stream.subarray(0, first));
      h.send(stream.subarray(first, second));
      h.send(stream.subarray(second));
      h.readAll();
      assert.deepEqual(h.statuses, expected, `split at ${first} and ${second}`);
      assert.equal(h.replies[3].text, GRACE[1]);
    }
  }
});

Deno.test("a stream sent one byte per read gets the same replies", () => {
  const h = new Harness();
  h.sendInPieces(concat([THREE, THREE]), 1);
  h.readAll();
  assert.deepEqual(h.statuses, [...THREE_STATUSES, ...THREE_STATUSES]);
});

// --- Protocol errors ---

const BAD_FRAMES: [string, Uint8Array, RegExp][] = [
  ["a frame of type G", frame(0x47, encoder.encode(ADA[0])), /0x47/],
  ["a lone zero byte", Uint8Array.of(0x00), /0x00/],
  ["a reply frame", encodeReply(STATUS_FOUND, ADA[1]), /0x52/],
  ["an oversize header alone", header(TYPE_QUERY, MAX_QUERY_BYTES + 1), /1025/],
  ["the largest length", header(TYPE_QUERY, 0xffffffff), /4294967295/],
];

for (const [what, bad, reason] of BAD_FRAMES) {
  Deno.test(`${what} gets PROTOCOL_ERROR after the frames before it, last, and ends the session`, () => {
    const h = new Harness();
    h.send(concat([THREE, bad, encodeQuery(ADA[0])]));
    assert.equal(h.session.phase, "ending");
    assert.equal(h.session.wantsRead, false);
    h.send(encodeQuery(ADA[0])); // dropped
    h.readAll(5);
    assert.deepEqual(h.statuses, [...THREE_STATUSES, STATUS_PROTOCOL_ERROR]);
    assert.match(h.replies[3].text, reason);
    assert.equal(h.replyCount(STATUS_PROTOCOL_ERROR), 1);
    assert.equal(h.replyCount(STATUS_FOUND), 1, "nothing after the error is answered");
    const [line] = h.logged("protocol error");
    assert.match(line, /\bwarn\b/);
    assert.ok(line.includes(`peer=${PEER}`), line);

    assert.ok(h.halfClose(), "the session asks for a half-close once its replies are written");
    assert.equal(h.session.phase, "lingering");
    assert.equal(h.session.wantsRead, true);
    h.send(encodeQueries([ADA[0], ADA[0]]));
    assert.equal(h.session.outputLength, 0, "a lingering session drops what arrives");
    assert.equal(h.session.deadline, h.now + LINGER_MS);
    h.end();
    assert.equal(h.session.closeReason, "peer-closed");
    assert.equal(h.open, 0);
  });
}

Deno.test("an oversize header is refused before any of its body arrives", () => {
  const h = new Harness();
  h.send(header(TYPE_QUERY, MAX_QUERY_BYTES + 1).subarray(0, 4));
  assert.equal(h.session.outputLength, 0, "four bytes do not show the length yet");
  h.send(header(TYPE_QUERY, MAX_QUERY_BYTES + 1).subarray(4));
  assert.ok(h.session.outputLength > 0);
  h.readAll();
  assert.deepEqual(h.statuses, [STATUS_PROTOCOL_ERROR]);
});

Deno.test("a query of exactly the maximum length is answered and the session stays open", () => {
  const h = new Harness();
  h.sendInPieces(frame(TYPE_QUERY, new Uint8Array(MAX_QUERY_BYTES).fill(0x61)), 100);
  h.readAll();
  assert.deepEqual(h.statuses, [STATUS_BAD_REQUEST]);
  assert.equal(h.session.phase, "open");
});

// --- The peer's EOF ---

Deno.test("the peer's EOF closes an idle session at once", () => {
  const h = new Harness();
  h.send(encodeQuery(ADA[0]));
  h.readAll();
  h.end();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.deepEqual(h.statuses, [STATUS_FOUND]);
});

Deno.test("the peer's EOF inside a frame closes the session, answering nothing for it", () => {
  const h = new Harness();
  h.send(concat([encodeQuery(ADA[0]), encodeQuery(GRACE[0]).subarray(0, 9)]));
  h.readAll();
  h.end();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.deepEqual(h.statuses, [STATUS_FOUND]);
});

Deno.test("the peer's EOF with replies owed ends the session once they are written", () => {
  const h = new Harness();
  h.send(THREE);
  h.end();
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.wantsRead, false);
  assert.equal(h.session.wantsHalfClose, false, "the peer has closed already");
  h.read(4);
  assert.equal(h.session.phase, "ending");
  h.readAll();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.deepEqual(h.statuses, THREE_STATUSES);
});

Deno.test("the peer's EOF while frames are held back answers them all, then closes", () => {
  const h = new Harness({ maxPendingWrite: 1 });
  h.send(concat([THREE, THREE]));
  assert.equal(h.session.wantsRead, false);
  h.end();
  assert.equal(h.session.phase, "ending");
  h.readAll(3);
  assert.deepEqual(h.statuses, [...THREE_STATUSES, ...THREE_STATUSES]);
  assert.equal(h.session.closeReason, "peer-closed");
});

// --- Timeouts ---

Deno.test("the idle timeout closes a silent session at its deadline, not before", () => {
  const h = new Harness({ idleTimeoutMs: 100, frameTimeoutMs: 50 });
  assert.equal(h.session.deadline, START + 100);
  h.tick(START + 99);
  assert.equal(h.session.phase, "open");
  h.tick(START + 100);
  assert.equal(h.session.closeReason, "idle-timeout");
  assert.equal(h.counter(Counter.idleTimeouts), 1);
  assert.equal(h.counter(Counter.frameTimeouts) + h.counter(Counter.writeTimeouts), 0);
  const [line] = h.logged("idle timeout");
  assert.match(line, /\bdebug\b/);
  assert.ok(line.includes(`peer=${PEER}`), line);
});

Deno.test("idleness counts from the last bytes received or the last reply taken", () => {
  const h = new Harness({ idleTimeoutMs: 100 });
  h.at(START + 40).send(encodeQuery(ADA[0]));
  assert.equal(h.session.deadline, Infinity, "no idle deadline while a reply waits");
  h.at(START + 90).readAll();
  assert.equal(h.session.deadline, START + 90 + 100);
  h.tick(START + 189);
  assert.equal(h.session.phase, "open");
  h.tick(START + 190);
  assert.equal(h.session.closeReason, "idle-timeout");
});

Deno.test("the frame timeout closes a session that leaves a frame unfinished", () => {
  const h = new Harness({ idleTimeoutMs: 1000, frameTimeoutMs: 50 });
  const query = encodeQuery(ADA[0]);
  h.at(START + 10).send(query.subarray(0, 3));
  assert.equal(h.session.deadline, START + 60);
  h.at(START + 40).send(query.subarray(3, 8));
  assert.equal(h.session.deadline, START + 60, "more of the same frame does not restart it");
  h.tick(START + 59);
  assert.equal(h.session.phase, "open");
  h.tick(START + 60);
  assert.equal(h.session.closeReason, "frame-timeout");
  assert.equal(h.counter(Counter.frameTimeouts), 1);
  assert.equal(h.counter(Counter.idleTimeouts), 0);
  assert.ok(h.logged("frame timeout")[0].includes(`peer=${PEER}`));
});

Deno.test("the frame timer starts again with each new unfinished frame and stops when none is", () => {
  const h = new Harness({ idleTimeoutMs: 1000, frameTimeoutMs: 50 });
  const query = encodeQuery(ADA[0]);
  h.send(query.subarray(0, query.length - 1));
  assert.equal(h.session.deadline, START + 50);
  h.at(START + 30).send(concat([query.subarray(query.length - 1), query.subarray(0, 2)]));
  h.readAll();
  assert.equal(h.session.deadline, START + 30 + 50, "a new frame was begun at 30");
  h.at(START + 70).send(query.subarray(2));
  h.readAll();
  assert.equal(h.session.deadline, START + 70 + 1000, "no frame is unfinished: the idle timer");
  assert.deepEqual(h.statuses, [STATUS_FOUND, STATUS_FOUND]);
});

Deno.test("a timeout of 0 is off", () => {
  const h = new Harness();
  h.send(concat([encodeQuery(ADA[0]), encodeQuery(ADA[0]).subarray(0, 4)]));
  assert.equal(h.session.deadline, Infinity, "no write timeout");
  h.readAll();
  assert.equal(h.session.deadline, Infinity, "no frame timeout");
  h.tick(START + 1e9);
  assert.equal(h.session.phase, "open");
  const idle = new Harness();
  idle.tick(START + 1e9);
  assert.equal(idle.session.phase, "open", "no idle timeout");
});

Deno.test("idle and frame timeouts do not fire while replies wait", () => {
  const h = new Harness({ idleTimeoutMs: 50, frameTimeoutMs: 50 });
  h.send(concat([encodeQuery(ADA[0]), encodeQuery(ADA[0]).subarray(0, 4)]));
  assert.equal(h.session.deadline, Infinity);
  h.tick(START + 10_000);
  assert.equal(h.session.phase, "open");
  const held = new Harness({ idleTimeoutMs: 50, frameTimeoutMs: 50, maxPendingWrite: 1 });
  held.send(concat([THREE, encodeQuery(ADA[0]).subarray(0, 4)]));
  held.tick(START + 10_000);
  assert.equal(held.session.phase, "open");
  held.readAll();
  assert.deepEqual(held.statuses, THREE_STATUSES);
});

Deno.test("a frame left unfinished while the session stopped reading gets its full time once reading resumes", () => {
  // The peer could not send the rest of its frame while the session read
  // nothing (its replies waited), so that time does not count against it.
  const h = new Harness({ frameTimeoutMs: 50, maxPendingWrite: 1 });
  const query = encodeQuery(ADA[0]);
  h.send(query.subarray(0, 3)); // a frame begun at START...
  h.at(START + 10).send(concat([query.subarray(3), query.subarray(0, 3)])); // ...done, another begun
  assert.equal(h.session.wantsRead, false, "the reply waits: no more is read");
  h.at(START + 1000).readAll();
  assert.equal(h.session.wantsRead, true);
  assert.ok(
    h.session.deadline >= START + 1000 + 50,
    `the frame timer restarts when reading resumes, not at ${h.session.deadline - START}`,
  );
  h.tick(START + 1000);
  assert.equal(h.session.phase, "open");
  h.at(START + 1010).send(query.subarray(3));
  h.readAll();
  assert.deepEqual(h.statuses, [STATUS_FOUND, STATUS_FOUND]);
});

Deno.test("the write timeout closes a session whose peer takes none of its replies", () => {
  const h = new Harness({ writeTimeoutMs: 100, idleTimeoutMs: 1000 });
  h.at(START + 500).send(encodeQuery(ADA[0]));
  assert.equal(h.session.deadline, START + 600, "counted from when the reply started waiting");
  h.at(START + 560).send(encodeQuery(ADA[0]));
  assert.equal(h.session.deadline, START + 600, "sending more is no progress in writing");
  h.tick(START + 599);
  assert.equal(h.session.phase, "open");
  h.tick(START + 600);
  assert.equal(h.session.closeReason, "write-timeout");
  assert.equal(h.counter(Counter.writeTimeouts), 1);
  assert.equal(h.counter(Counter.idleTimeouts), 0);
  assert.ok(h.logged("write timeout")[0].includes(`peer=${PEER}`));
});

Deno.test("the write timeout counts from the last bytes the peer took", () => {
  const h = new Harness({ writeTimeoutMs: 100 });
  h.send(THREE);
  h.at(START + 80).read(3);
  assert.equal(h.session.deadline, START + 180);
  h.tick(START + 179);
  assert.equal(h.session.phase, "open");
  h.tick(START + 180);
  assert.equal(h.session.closeReason, "write-timeout");
});

Deno.test("the write timeout never fires for a slow but steady reader", () => {
  const name = `Slow ${"s".repeat(4000)}`;
  const h = new Harness({ writeTimeoutMs: 100, idleTimeoutMs: 100, frameTimeoutMs: 100 }, {
    people: [[ADA[0], name]],
  });
  h.send(encodeQueries([ADA[0], ADA[0], ADA[0]]));
  let steps = 0;
  for (; h.session.outputLength > 0 && steps < 100_000; steps++) {
    h.tick(h.now + 99);
    assert.equal(h.session.phase, "open", `after ${steps} steps`);
    assert.equal(h.session.deadline, h.now + 1);
    h.read(1);
  }
  assert.ok(steps > 12_000, "every byte was read on its own");
  assert.deepEqual(h.replies.map((reply) => reply.text), [name, name, name]);
  assert.equal(h.counter(Counter.writeTimeouts), 0);
});

Deno.test("the write timeout covers frames held back and replies of an ending session", () => {
  const held = new Harness({ writeTimeoutMs: 100, maxPendingWrite: 1 });
  held.send(concat([THREE, THREE]));
  held.tick(START + 100);
  assert.equal(held.session.closeReason, "write-timeout");
  const ending = new Harness({ writeTimeoutMs: 100 });
  ending.send(Uint8Array.of(0x47));
  assert.equal(ending.session.phase, "ending");
  ending.tick(START + 100);
  assert.equal(ending.session.closeReason, "write-timeout");
  const refused = new Harness({ writeTimeoutMs: 100, maxConnections: 0 });
  refused.tick(START + 100);
  assert.equal(refused.session.closeReason, "write-timeout");
  assert.equal(refused.counter(Counter.writeTimeouts), 1);
});

// --- Write progress seen in what the peer's TCP acknowledges ---

/** A session whose replies wait, the peer acknowledging `acked.value` bytes so far. */
function ackHarness(writeTimeoutMs: number, acked: { value: number }): Harness {
  const h = new Harness({ writeTimeoutMs }, {
    people: [[ADA[0], `Long ${"l".repeat(4000)}`]],
    acked: () => acked.value,
  });
  h.send(encodeQueries([ADA[0], ADA[0]]));
  h.read(100); // the kernel took a little, then its buffer was full
  return h;
}

Deno.test("with acknowledgements to probe, the write timer probes them 8 times per timeout", () => {
  const acked = { value: 5000 };
  const h = ackHarness(800, acked);
  assert.equal(WRITE_PROBES, 8);
  assert.equal(h.session.deadline, START + 100, "the first probe");
  h.tick(START + 100); // sets the mark
  assert.equal(h.session.deadline, START + 200);
  h.tick(START + 200);
  assert.equal(h.session.deadline, START + 300, "nothing new, and the timeout is not yet due");
});

Deno.test("a peer whose TCP acknowledges more is taking its replies: no write timeout", () => {
  const acked = { value: 5000 };
  const h = ackHarness(800, acked);
  // The kernel takes nothing more for 5 s, but the peer acknowledges bytes every 700 ms.
  for (let time = START + 100; time <= START + 5000; time += 100) {
    if ((time - START) % 700 === 0) acked.value += 65536;
    h.tick(time);
    assert.equal(h.session.phase, "open", `at +${time - START} ms`);
  }
  assert.equal(h.counter(Counter.writeTimeouts), 0);
  h.readAll();
  assert.equal(h.replies.length, 2);
});

Deno.test("a peer whose TCP acknowledges nothing more is closed at the write timeout", () => {
  const acked = { value: 5000 };
  const h = ackHarness(800, acked);
  for (let time = START + 100; time < START + 800; time += 100) {
    h.tick(time);
    assert.equal(h.session.phase, "open");
  }
  h.tick(START + 800);
  assert.equal(h.session.closeReason, "write-timeout");
  // Acknowledgements that stop are progress until they stop.
  const stopping = { value: 5000 };
  const later = ackHarness(800, stopping);
  later.tick(START + 100);
  stopping.value += 1000;
  later.tick(START + 200); // progress at +200
  later.tick(START + 999);
  assert.equal(later.session.phase, "open");
  later.tick(START + 1000);
  assert.equal(later.session.closeReason, "write-timeout");
});

Deno.test("a transport that cannot tell (-1) leaves the write timeout as it was", () => {
  const h = ackHarness(800, { value: -1 });
  h.tick(START + 700);
  assert.equal(h.session.phase, "open");
  h.tick(START + 800);
  assert.equal(h.session.closeReason, "write-timeout");
});

// --- The transport's handshake (TLS) ---

/** A handshake failure as a TLS transport reports one (session/handshake_test.ts tests its report). */
const NOT_TLS: TlsFailure = {
  kind: "failed",
  reason: "the handshake failed: wrong version number",
};

Deno.test("a handshake counts against the frame timeout, and only its deadline applies while it runs", () => {
  const h = new Harness({ idleTimeoutMs: 1000, frameTimeoutMs: 50, writeTimeoutMs: 20 });
  h.session.handshakeStarted(h.now);
  assert.equal(h.session.deadline, START + 50);
  h.tick(START + 49);
  assert.equal(h.session.phase, "open");
  h.tick(START + 50);
  assert.equal(h.session.closeReason, "handshake-timeout");
  assert.equal(h.counter(Counter.handshakeTimeouts), 1);
  assert.equal(h.counter(Counter.frameTimeouts), 0);
  assert.ok(h.logged("handshake timeout")[0].includes(`peer=${PEER}`));
  const off = new Harness({ idleTimeoutMs: 1000, frameTimeoutMs: 0 });
  off.session.handshakeStarted(off.now);
  assert.equal(off.session.deadline, Infinity, "a frame timeout of 0 leaves handshakes untimed");
});

Deno.test("a finished handshake starts the idle time, and queries are answered as usual", () => {
  const h = new Harness({ idleTimeoutMs: 1000, frameTimeoutMs: 50 });
  h.session.handshakeStarted(h.now);
  h.at(START + 30).session.handshakeDone(h.now);
  assert.equal(h.session.deadline, START + 30 + 1000);
  h.tick(START + 80);
  assert.equal(h.session.phase, "open", "the handshake's deadline is gone");
  h.send(THREE);
  h.readAll();
  assert.deepEqual(h.statuses, THREE_STATUSES);
});

Deno.test("a failed handshake ends the session without a reply, then lingers until the peer closes", () => {
  const h = new Harness({ frameTimeoutMs: 50 });
  h.session.handshakeStarted(h.now);
  h.at(START + 5).session.handshakeFailed(h.now, NOT_TLS);
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.outputLength, 0);
  assert.ok(h.halfClose(), "the server's side ends at once");
  assert.equal(h.session.phase, "lingering");
  assert.equal(h.session.wantsRead, true, "what the client still sends is read and dropped");
  assert.equal(h.session.deadline, START + 5 + LINGER_MS);
  h.end();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.deepEqual(h.replies, []);
  assert.equal(h.open, 0, "the slot is given back");
  // A session refused as busy says nothing either: its reply cannot be sent without TLS.
  const busy = new Harness({ maxConnections: 1 }, { openConnections: openCount(1) });
  busy.session.handshakeStarted(busy.now);
  busy.session.handshakeFailed(busy.now, NOT_TLS);
  assert.equal(busy.session.outputLength, 0);
  assert.ok(busy.halfClose());
});

Deno.test("drain during a handshake ends the session after DRAIN_READ_MS, not at the grace", () => {
  const h = new Harness({ frameTimeoutMs: 10_000 });
  h.session.handshakeStarted(h.now);
  const drainAt = START + 10;
  h.at(drainAt).session.drain(h.now);
  assert.equal(h.session.deadline, drainAt + DRAIN_READ_MS);
  h.tick(drainAt + DRAIN_GRACE_MS);
  assert.equal(h.session.phase, "open", "a handshake under way is not quiet");
  h.tick(drainAt + DRAIN_READ_MS);
  assert.equal(h.session.phase, "ending");
});

// --- A PROXY header before the transport's handshake ---

/** A balancer on loopback (trusted by default) passing TLS through, for clients in 192.0.2.0/24. */
const PROXY_BEFORE_TLS: AccessRules = {
  allow: ["192.0.2.0/24"],
  protectedMode: false,
  proxyProtocol: true,
  trustedProxies: "127.0.0.0/8",
};

function proxyHeaderFrom(address: string): Uint8Array {
  return encodeProxyHeader({
    version: 2,
    source: { address, port: 40000 },
    destination: { address: "198.51.100.1", port: 8443 },
  });
}

Deno.test("receiveProxyHeader takes only the header's bytes and leaves the handshake's", () => {
  const h = new Harness({ frameTimeoutMs: 100 }, { access: PROXY_BEFORE_TLS });
  assert.equal(h.session.wantsProxyHeader, true);
  assert.equal(h.session.deadline, START + 100, "the header counts against the frame timeout");
  const header = proxyHeaderFrom("192.0.2.7");
  const clientHello = Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x10);
  const bytes = concat([header, clientHello]);
  assert.equal(h.session.receiveProxyHeader(bytes.subarray(0, 7), 7, h.now), 7, "all of a part");
  const rest = bytes.subarray(7);
  assert.equal(h.session.receiveProxyHeader(rest, rest.length, h.now), header.length - 7);
  assert.equal(h.session.wantsProxyHeader, false);
  assert.equal(h.session.phase, "open");
  assert.equal(h.session.outputLength, 0);
  h.session.handshakeStarted(h.now);
  h.session.handshakeDone(h.now);
  h.send(THREE);
  h.readAll();
  assert.deepEqual(h.statuses, THREE_STATUSES);
});

Deno.test("receiveProxyHeader: a refused client hears why once the handshake is done", () => {
  const h = new Harness({}, { access: PROXY_BEFORE_TLS });
  const header = proxyHeaderFrom("198.51.100.9");
  assert.equal(h.session.receiveProxyHeader(header, header.length, START), header.length);
  assert.equal(h.session.phase, "open", "nothing can be said before the handshake");
  assert.equal(h.session.outputLength, 0);
  h.session.handshakeStarted(START);
  h.session.handshakeDone(START);
  h.readAll();
  assert.deepEqual(h.statuses, [STATUS_FORBIDDEN]);
  assert.equal(h.counter(Counter.refusedNotAllowed), 1);
  assert.equal(h.session.phase, "ending");
});

Deno.test("receiveProxyHeader ends a malformed header's session without a reply", () => {
  const h = new Harness({}, { access: PROXY_BEFORE_TLS });
  const bad = encoder.encode("PROXY TCP9 nonsense\r\n");
  assert.equal(h.session.receiveProxyHeader(bad, bad.length, START), bad.length);
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.outputLength, 0, "no PROTOCOL_ERROR: no TLS to send it over");
  assert.equal(h.replyCount(STATUS_PROTOCOL_ERROR), 1);
  assert.equal(h.logged("protocol error").length, 1);
  assert.ok(h.halfClose());
});

// --- Log floods ---

Deno.test("protocol errors from one client are logged once per cause and interval, on any connection", () => {
  const h = new Harness();
  const bad = BAD_FRAMES[0][1];
  h.send(bad);
  for (let i = 1; i < 1000; i++) {
    const session = new Session(h.context, h.now + i, () => PEER_ADDRESS);
    session.receive(bad, bad.length, h.now + i);
    assert.equal(session.phase, "ending");
    session.abort();
  }
  assert.equal(h.replyCount(STATUS_PROTOCOL_ERROR), 1000, "every one is still counted");
  assert.equal(h.logged("protocol error").length, 1);
  const later = new Session(h.context, START + 60_000, () => PEER_ADDRESS);
  later.receive(bad, bad.length, START + 60_000);
  const lines = h.logged("protocol error");
  assert.equal(lines.length, 2, "the next interval says how many there were");
  assert.match(lines[1], /count=1000\b/);
});

Deno.test("a connection over maxConnections is logged once per client and interval", () => {
  const h = new Harness({ maxConnections: 3 }, { openConnections: openCount(3) });
  for (let i = 0; i < 500; i++) new Session(h.context, START + i, () => PEER_ADDRESS);
  assert.equal(h.counter(Counter.busyRefusals), 501);
  assert.equal(h.logged("connection refused: server busy").length, 1);
});

Deno.test("a malformed PROXY header's log line holds none of the header's bytes", () => {
  const h = new Harness({}, { access: { ...PROXY_BEFORE_TLS, allow: undefined } });
  const header = encoder.encode("PROXY TCP4 ada@example.com 5.6.7.8 1 2\r\n");
  h.send(header);
  assert.equal(h.replyCount(STATUS_PROTOCOL_ERROR), 1);
  const [line] = h.logged("protocol error");
  assert.ok(line, "the refusal is logged");
  for (const part of ["ada", "example", "@", "TCP4 ", "5.6.7.8"]) {
    assert.ok(!line.includes(part), `${line} holds ${part}`);
  }
});

// --- Backpressure ---

Deno.test("a session stops reading at maxPendingWrite and answers held frames in order as room frees", () => {
  const maxPendingWrite = 64;
  const h = new Harness({ maxPendingWrite });
  const queries = Array.from({ length: 60 }, (_, i) => PEOPLE[i % PEOPLE.length][0]);
  h.send(encodeQueries(queries));
  assert.ok(h.session.outputLength >= maxPendingWrite, "answered up to the limit");
  assert.ok(h.session.outputLength < maxPendingWrite + LONGEST_REPLY_FRAME, "and one reply more");
  assert.equal(h.session.wantsRead, false);
  let reads = 0;
  while (h.replies.length < queries.length && reads++ < 10_000) {
    const answered = h.replyCount(STATUS_FOUND);
    if (answered < queries.length) {
      assert.equal(h.session.wantsRead, false, `reading stays off with ${answered} answered`);
    }
    h.read(7);
    assert.ok(h.session.outputLength < maxPendingWrite + LONGEST_REPLY_FRAME);
  }
  assert.deepEqual(
    h.replies.map((reply) => reply.text),
    queries.map((_, i) => PEOPLE[i % PEOPLE.length][1]),
  );
  assert.equal(h.session.outputLength, 0);
  assert.equal(h.session.wantsRead, true, "reading resumes once everything is taken");
});

Deno.test("a session with replies below maxPendingWrite keeps reading", () => {
  const h = new Harness({ maxPendingWrite: 1000 });
  h.send(THREE);
  assert.ok(h.session.outputLength > 0);
  assert.equal(h.session.wantsRead, true);
  h.send(THREE);
  h.readAll();
  assert.deepEqual(h.statuses, [...THREE_STATUSES, ...THREE_STATUSES]);
});

// --- Drain ---

Deno.test("drain ends a quiet session after DRAIN_GRACE_MS", () => {
  const h = new Harness({ idleTimeoutMs: 60_000 });
  const drainAt = START + 5000;
  h.at(drainAt).session.drain(h.now);
  assert.equal(h.session.phase, "open", "bytes already sent may still arrive");
  assert.equal(h.session.deadline, drainAt + DRAIN_GRACE_MS);
  h.tick(drainAt + DRAIN_GRACE_MS - 1);
  assert.equal(h.session.phase, "open");
  h.tick(drainAt + DRAIN_GRACE_MS);
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.wantsRead, false);
  assert.ok(h.halfClose());
  assert.equal(h.session.phase, "lingering");
  h.end();
  assert.equal(h.session.closeReason, "peer-closed");
  assert.equal(h.open, 0);
});

Deno.test("a draining session answers what arrives in the grace and ends once quiet again", () => {
  const h = new Harness();
  const drainAt = START + 5000;
  h.at(drainAt).session.drain(h.now);
  h.at(drainAt + 60).send(THREE);
  h.at(drainAt + 70).readAll();
  assert.deepEqual(h.statuses, THREE_STATUSES);
  assert.equal(h.session.deadline, drainAt + 70 + DRAIN_GRACE_MS);
  h.tick(drainAt + 70 + DRAIN_GRACE_MS - 1);
  assert.equal(h.session.phase, "open");
  h.tick(drainAt + 70 + DRAIN_GRACE_MS);
  assert.equal(h.session.phase, "ending");
});

Deno.test("drain ends a never-ending pipeliner after DRAIN_READ_MS, answering all it had sent", () => {
  const h = new Harness({ idleTimeoutMs: 60_000, frameTimeoutMs: 60_000 });
  const drainAt = START + 5000;
  h.at(drainAt).session.drain(h.now);
  let sent = 0;
  for (let t = drainAt; h.session.phase === "open" && t < drainAt + 10 * DRAIN_READ_MS; t += 10) {
    h.tick(t);
    if (!h.session.wantsRead) break;
    h.send(THREE);
    sent += 3;
    assert.ok(h.session.deadline <= drainAt + DRAIN_READ_MS);
    h.readAll();
  }
  assert.equal(h.now, drainAt + DRAIN_READ_MS, "ended by the tick at the read limit");
  assert.equal(h.session.phase, "ending");
  h.readAll();
  assert.equal(h.replies.length, sent, "everything received was answered");
  assert.ok(h.halfClose());
});

Deno.test("drain ends a pipeliner held back by its replies, then answers every frame it holds", () => {
  const h = new Harness({ maxPendingWrite: 1 });
  const drainAt = START + 5000;
  h.at(drainAt).session.drain(h.now);
  h.at(drainAt + DRAIN_READ_MS - 10).send(concat([THREE, THREE, THREE]));
  assert.equal(h.session.deadline, drainAt + DRAIN_READ_MS);
  h.tick(drainAt + DRAIN_READ_MS);
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.wantsHalfClose, false, "its replies go first");
  h.readAll(2);
  assert.deepEqual(h.statuses, [...THREE_STATUSES, ...THREE_STATUSES, ...THREE_STATUSES]);
  assert.ok(h.halfClose());
});

Deno.test("drain ends a session stuck inside a frame after DRAIN_READ_MS, not at the grace", () => {
  const h = new Harness();
  const drainAt = START + 5000;
  h.at(drainAt - 1000).send(encodeQuery(ADA[0]).subarray(0, 5));
  h.at(drainAt).session.drain(h.now);
  assert.equal(h.session.deadline, drainAt + DRAIN_READ_MS);
  h.tick(drainAt + DRAIN_GRACE_MS);
  assert.equal(h.session.phase, "open");
  h.tick(drainAt + DRAIN_READ_MS);
  assert.equal(h.session.phase, "ending");
  assert.ok(h.halfClose());
  assert.deepEqual(h.replies, []);
});

Deno.test("drain keeps a lingering session's linger deadline and a second drain changes nothing", () => {
  const h = new Harness();
  h.send(Uint8Array.of(0x47));
  h.readAll();
  h.halfClose();
  h.at(START + 10).session.drain(h.now);
  assert.equal(h.session.deadline, START + LINGER_MS);
  const again = new Harness();
  again.at(START + 10).session.drain(again.now);
  again.at(START + 50).session.drain(again.now);
  assert.equal(again.session.deadline, START + 10 + DRAIN_GRACE_MS, "the first drain counts");
});

// --- Properties ---

/** What the harness does next in a random run. */
type Step =
  | { kind: "receive"; bytes: number; wait: number }
  | { kind: "write"; bytes: number; wait: number }
  | { kind: "eof"; wait: number }
  | { kind: "drain"; wait: number }
  | { kind: "tick"; wait: number }
  | { kind: "tick-at-deadline"; early: number }
  | { kind: "abort" };

const wait = fc.oneof(
  { arbitrary: fc.constant(0), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 60 }), weight: 4 },
  { arbitrary: fc.integer({ min: 60, max: 2 * DRAIN_READ_MS }), weight: 1 },
);

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("receive" as const),
      bytes: fc.integer({ min: 1, max: 200 }),
      wait,
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      bytes: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant(1 << 20)),
      wait,
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ kind: fc.constant("eof" as const), wait }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("drain" as const), wait }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("tick" as const), wait }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("tick-at-deadline" as const),
      early: fc.constantFrom(0, 0, 1),
    }),
    weight: 2,
  },
  { arbitrary: fc.constant({ kind: "abort" as const }), weight: 1 },
);

const limits: fc.Arbitrary<Partial<ServiceLimits>> = fc.record({
  idleTimeoutMs: fc.constantFrom(0, 40, 300),
  frameTimeoutMs: fc.constantFrom(0, 30, 200),
  writeTimeoutMs: fc.constantFrom(0, 50, 400),
  maxPendingWrite: fc.constantFrom(1, 20, 100, 1 << 20),
});

interface Run {
  pieces: Uint8Array[];
  limits: Partial<ServiceLimits>;
  /** Whether the server is at its connection limit when the session opens. */
  busy: boolean;
  steps: Step[];
}

const run: fc.Arbitrary<Run> = fc.record({
  pieces: fc.array(streamPiece, { maxLength: 12 }),
  limits,
  busy: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, fc.constant(true)),
  steps: fc.array(step, { maxLength: 60 }),
});

const PHASE_ORDER: readonly SessionPhase[] = ["open", "ending", "lingering", "closed"];
/** Other sessions' slots, so a wrong release shows. */
const OTHERS = 3;

/** Plays one random run against the model, checking the invariants after every step. */
function playRun({ pieces, limits, busy, steps }: Run): void {
  const maxConnections = busy ? OTHERS : 100;
  const h = new Harness({ ...limits, maxConnections }, { openConnections: openCount(OTHERS) });
  const { session } = h;
  const stream = concat(pieces);
  const maxPendingWrite = h.context.limits.maxPendingWrite;
  /** Bytes of the stream delivered so far; those delivered while open are the session's input. */
  let delivered = 0;
  const taken: Uint8Array[] = [];
  let eofTaken = false;
  let drained = false;
  let lastPhase = 0;
  let closeReason: CloseReason | undefined;

  const expected = (): ModelReply[] =>
    busy ? [{ status: STATUS_SERVER_BUSY }] : modelReplies(concat(taken));

  const check = (what: string) => {
    const phase = PHASE_ORDER.indexOf(session.phase);
    assert.ok(phase >= lastPhase, `${what}: the phase went back to ${session.phase}`);
    lastPhase = phase;
    const model = expected();
    for (const reply of h.replies) {
      const size = HEADER_SIZE + 1 + encoder.encode(reply.text).length;
      assert.ok(size < LONGEST_REPLY_FRAME, `a reply of ${size} bytes: raise the bound`);
    }
    assert.deepEqual(
      comparable(h.replies),
      model.slice(0, h.replies.length),
      `${what}: the replies so far begin as the model's`,
    );
    assert.ok(
      session.outputLength < maxPendingWrite + LONGEST_REPLY_FRAME,
      `${what}: ${session.outputLength} bytes due, over the limit and one reply`,
    );
    if (!busy) {
      const protocolError = model.at(-1)?.status === STATUS_PROTOCOL_ERROR;
      const errorRead = h.replies.at(-1)?.status === STATUS_PROTOCOL_ERROR;
      if (errorRead || eofTaken) assert.notEqual(session.phase, "open", what);
      if (session.phase !== "open" && !drained && !protocolError && !eofTaken) {
        assert.ok(
          session.closed && session.closeReason!.endsWith("timeout") ||
            session.closeReason === "aborted",
          `${what}: only an error, an EOF, a drain, a timeout or an abort ends a session`,
        );
      }
    }
    const holdsSlot = !busy && !session.closed;
    assert.equal(h.open, OTHERS + (holdsSlot ? 1 : 0), `${what}: the shared count`);
    assert.equal(h.counter(Counter.connectionsOpen), holdsSlot ? 1 : 0, `${what}: the gauge`);
    if (session.closed) {
      closeReason ??= session.closeReason;
      assert.equal(session.closeReason, closeReason, `${what}: the close reason stays`);
      assert.equal(session.outputLength, 0);
      assert.equal(session.wantsRead, false);
      assert.equal(session.deadline, Infinity);
    } else {
      const canAct = session.outputLength > 0 || session.wantsHalfClose || session.wantsRead ||
        Number.isFinite(session.deadline);
      assert.ok(canAct, `${what}: a live session gives its driver something to wait for`);
    }
  };

  /** Ticks at `time`: nothing changes before the deadline, something at or after it. */
  const tickAt = (time: number, what: string) => {
    const before = visible(h);
    h.tick(time);
    if (time < before.deadline) assert.deepEqual(visible(h), before, `${what} before the deadline`);
    else assert.notDeepEqual(visible(h), before, `${what} at the deadline changes something`);
  };

  const act = (s: Step) => {
    if ("wait" in s) h.at(h.now + s.wait);
    switch (s.kind) {
      case "receive": {
        // A driver reads only while the session wants input.
        if (!session.wantsRead || delivered >= stream.length) return;
        const chunk = stream.subarray(delivered, delivered + s.bytes);
        delivered += chunk.length;
        if (session.phase === "open") taken.push(chunk);
        return h.send(chunk);
      }
      case "eof":
        if (!session.wantsRead) return;
        if (session.phase === "open") eofTaken = true;
        return h.end();
      case "write":
        h.read(s.bytes);
        return;
      case "drain":
        drained = true;
        return session.drain(h.now);
      case "tick":
        return tickAt(h.now, "a tick");
      case "tick-at-deadline":
        if (Number.isFinite(session.deadline)) {
          tickAt(Math.max(h.now, session.deadline - s.early), "a tick near the deadline");
        }
        return;
      case "abort":
        return session.abort();
    }
  };

  for (const [i, s] of steps.entries()) {
    act(s);
    h.halfClose(); // drivers half-close as soon as asked
    check(`step ${i} (${s.kind})`);
  }
  // The peer reads everything and finishes; time runs to each deadline.
  for (let round = 0; round < 100 && !session.closed; round++) {
    if (session.outputLength > 0) h.readAll();
    else if (h.halfClose()) {
      // Lingering now.
    } else if (session.wantsRead) {
      if (session.phase === "open") eofTaken = true;
      h.end();
    } else tickAt(session.deadline, "the epilogue's tick");
    check(`epilogue round ${round}`);
  }
  assert.ok(session.closed, "the session closed");
  if (session.closeReason === "peer-closed" || session.closeReason === "linger-over") {
    assert.deepEqual(comparable(h.replies), expected(), "a session that ended answered it all");
  }
}

Deno.test("random event sequences keep to the model of the reply stream and the slot", () => {
  fc.assert(fc.property(run, playRun), { numRuns: 2000, seed: 20261202 });
});

Deno.test("random event sequences with long valid pipelines keep to the model", () => {
  const pipeline = fc.array(
    fc.constantFrom(...PEOPLE.map(([email]) => encodeQuery(email)), encodeQuery("x@y.example")),
    { minLength: 20, maxLength: 80 },
  );
  const longRun = fc.record({
    pieces: pipeline,
    limits,
    busy: fc.constant(false),
    steps: fc.array(step, { minLength: 20, maxLength: 120 }),
  });
  fc.assert(fc.property(longRun, playRun), { numRuns: 500, seed: 20261203 });
});
