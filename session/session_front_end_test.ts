/**
 * The front-end seam, proved with a second wire protocol: a toy line
 * protocol (one email per line in; `+name`, `-` or `?` per line out) driven
 * through the same {@linkcode Session} as the binary protocol, through
 * admission, access, the PROXY header, per-client limits, timeouts, drain
 * and linger, and a StartTLS of its own (`STARTTLS`: `OK`, then TLS).
 * Nothing here touches the binary codec: if the session still held a rule
 * of the binary protocol, these tests could not pass.
 */

import assert from "node:assert/strict";
import { AccessPolicy } from "../access/policy.ts";
import { ClientLimits } from "../access/limits.ts";
import type { AddressBook } from "../book/addressbook.ts";
import {
  type Conversation,
  type FrontEnd,
  MalformedInput,
  NO_REQUEST,
  Outcome,
  type ReplyBuffer,
  type RequestGate,
} from "../wire/front_end.ts";
import { Logger } from "../common/log.ts";
import { RepeatSummary } from "../common/log_repeats.ts";
import { Counter, COUNTERS_PER_THREAD } from "./counters.ts";
import { encodeProxyHeader } from "../access/proxy_header.ts";
import {
  DRAIN_GRACE_MS,
  DRAIN_READ_MS,
  LINGER_MS,
  type ServiceLimits,
  Session,
  type SessionContext,
} from "./session.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** The longest line the toy protocol takes. */
const MAX_LINE = 100;

/** One connection of the line protocol: a line buffer, answered line by line. */
class LineConversation implements Conversation {
  #buffer = "";
  /** The line just answered was `STARTTLS`: TLS starts once `OK` is written. */
  upgrade = false;

  receive(bytes: Uint8Array, length: number): void {
    // Copied at once: a toy protocol can afford it, and then hold() has nothing to do.
    this.#buffer += decoder.decode(bytes.subarray(0, length));
  }

  get midRequest(): boolean {
    return this.#buffer.length > 0;
  }

  /** The line protocol has no goodbye: a connection ends by EOF or a rule. */
  readonly finished = false;

  answerNext(output: ReplyBuffer, book: AddressBook, gate: RequestGate | undefined): number {
    const end = this.#buffer.indexOf("\n");
    if (end < 0) {
      if (this.#buffer.length > MAX_LINE) throw new MalformedInput("The line is too long.");
      return NO_REQUEST;
    }
    const query = this.#buffer.slice(0, end).trim();
    this.#buffer = this.#buffer.slice(end + 1);
    this.upgrade = false;
    if (query === "STARTTLS") {
      if (this.#buffer.length > 0) throw new MalformedInput("Bytes followed STARTTLS.");
      this.upgrade = true;
      return write(output, "OK", Outcome.other);
    }
    if (!query.includes("@")) return write(output, "?", Outcome.badRequest);
    const name = book.get(query);
    const refusal = gate?.admit(name !== undefined);
    if (refusal !== undefined) return write(output, `! ${refusal}`, Outcome.rateLimited);
    return name === undefined
      ? write(output, "-", Outcome.notFound)
      : write(output, `+${name}`, Outcome.found);
  }

  hold(): void {}

  reset(): void {
    this.#buffer = "";
  }
}

function write(output: ReplyBuffer, line: string, outcome: Outcome): Outcome {
  output.append(encoder.encode(`${line}\n`));
  return outcome;
}

const LINE_FRONT_END: FrontEnd = {
  name: "line",
  connect: () => new LineConversation(),
  writeBusy: (output) => void write(output, "BUSY", Outcome.busy),
  writeForbidden: (output, reason) => void write(output, `FORBIDDEN ${reason}`, Outcome.forbidden),
  writeTooManyConnections: (output, reason) =>
    void write(output, `! ${reason}`, Outcome.rateLimited),
  writeProtocolError: (output, message) =>
    void write(output, `ERROR ${message}`, Outcome.protocolError),
  writeGoodbye: (output) => void write(output, "BYE", Outcome.found),
};

const START = 1_000_000;
const PEER = { hostname: "127.0.0.2", port: 40000 };
const NO_TIMEOUTS: ServiceLimits = {
  maxConnections: 100,
  idleTimeoutMs: 0,
  frameTimeoutMs: 0,
  writeTimeoutMs: 0,
  maxPendingWrite: 1 << 20,
};
const [ADA_EMAIL, ADA_NAME] = PEOPLE[0];

/** A session of the line protocol, with the driver played by hand. */
class LineHarness {
  readonly context: SessionContext;
  readonly session: Session;
  readonly lines: string[] = [];
  now = START;

  constructor(
    limits: Partial<ServiceLimits> = {},
    extra: Partial<SessionContext> = {},
    openConnections = new Int32Array(new SharedArrayBuffer(4)),
  ) {
    this.context = {
      frontEnd: LINE_FRONT_END,
      book: makeBook(),
      limits: { ...NO_TIMEOUTS, ...limits },
      counters: new Float64Array(COUNTERS_PER_THREAD),
      outcomes: new Float64Array(Object.keys(Outcome).length),
      openConnections,
      log: new Logger({ level: "debug", write: (line) => this.lines.push(line) }),
      refusals: new RepeatSummary(),
      ...extra,
    };
    this.session = new Session(this.context, this.now, () => PEER);
  }

  send(text: string | Uint8Array): void {
    const bytes = typeof text === "string" ? encoder.encode(text) : text;
    this.session.receive(bytes, bytes.length, this.now);
  }

  /** Takes every byte due, as the peer reading them; returns the lines read. */
  read(): string[] {
    const text = decoder.decode(this.session.outputBytes.subarray(0, this.session.outputLength));
    this.session.wrote(this.session.outputLength, this.now);
    return text.split("\n").filter((line) => line !== "");
  }

  tick(time: number): void {
    this.now = time;
    this.session.tick(time);
  }

  outcome(outcome: Outcome): number {
    return this.context.outcomes[outcome];
  }
}

Deno.test("the line front end answers each line from the book through the session", () => {
  const h = new LineHarness();
  h.send(`${ADA_EMAIL}\nnobody@example.com\nnot an email\n`);
  assert.deepEqual(h.read(), [`+${ADA_NAME}`, "-", "?"]);
  assert.equal(h.outcome(Outcome.found), 1);
  assert.equal(h.outcome(Outcome.notFound), 1);
  assert.equal(h.outcome(Outcome.badRequest), 1);
  assert.equal(h.session.phase, "open");
});

Deno.test("the line front end's protocol error ends the session, then it lingers and closes", () => {
  const h = new LineHarness();
  h.send("x".repeat(MAX_LINE + 1));
  assert.deepEqual(h.read(), ["ERROR The line is too long."]);
  assert.equal(h.outcome(Outcome.protocolError), 1);
  assert.ok(h.lines.some((line) => line.includes("protocol error")));
  assert.ok(h.session.wantsHalfClose);
  h.session.halfClosed(h.now);
  assert.equal(h.session.phase, "lingering");
  assert.equal(h.session.deadline, h.now + LINGER_MS);
  h.tick(h.now + LINGER_MS);
  assert.equal(h.session.closeReason, "linger-over");
});

Deno.test("a line session over the connection limit is told BUSY in its own words", () => {
  const open = new Int32Array(new SharedArrayBuffer(4));
  open[0] = 2;
  const h = new LineHarness({ maxConnections: 2 }, {}, open);
  assert.equal(h.session.phase, "ending");
  assert.deepEqual(h.read(), ["BUSY"]);
  assert.equal(h.outcome(Outcome.busy), 1);
  assert.equal(h.context.counters[Counter.busyRefusals], 1);
  assert.equal(open[0], 2, "a refused session takes no slot");
});

Deno.test("a line session refused by the access rules hears why in its own words", () => {
  const access = AccessPolicy.fromRules({
    allow: ["10.0.0.0/8"],
    protectedMode: false,
    proxyProtocol: false,
  });
  const h = new LineHarness({}, { access });
  assert.deepEqual(h.read(), [`FORBIDDEN ${AccessPolicy.replyText("not_allowed")}`]);
  assert.equal(h.outcome(Outcome.forbidden), 1);
  assert.equal(h.context.counters[Counter.refusedNotAllowed], 1);
});

Deno.test("a line session behind a PROXY header is judged by the client it names", () => {
  const access = AccessPolicy.fromRules({
    allow: ["192.0.2.0/24"],
    protectedMode: false,
    proxyProtocol: true,
  });
  const h = new LineHarness({ frameTimeoutMs: 100 }, { access });
  assert.equal(h.session.deadline, START + 100, "the header counts against the frame timeout");
  const header = encodeProxyHeader({
    version: 2,
    source: { address: "192.0.2.7", port: 5000 },
    destination: { address: "198.51.100.1", port: 8080 },
  });
  h.send(new Uint8Array([...header, ...encoder.encode(`${ADA_EMAIL}\n`)]));
  assert.deepEqual(h.read(), [`+${ADA_NAME}`]);
  const refused = new LineHarness({}, { access });
  refused.send(encodeProxyHeader({
    version: 1,
    source: { address: "203.0.113.9", port: 5000 },
    destination: { address: "198.51.100.1", port: 8080 },
  }));
  assert.deepEqual(refused.read(), [`FORBIDDEN ${AccessPolicy.replyText("not_allowed")}`]);
});

Deno.test("a line session's queries meet the per-client rate and found limits", () => {
  const rate = new LineHarness({}, {
    clientLimits: ClientLimits.create({ rate: { count: 2, periodMs: 60_000 } }),
  });
  rate.send(`${ADA_EMAIL}\nnobody@example.com\nnobody@example.com\n`);
  const rateLines = rate.read();
  assert.deepEqual(rateLines.slice(0, 2), [`+${ADA_NAME}`, "-"]);
  assert.match(rateLines[2], /^! /, "the third query is over the rate limit");
  assert.equal(rate.outcome(Outcome.rateLimited), 1);
  assert.equal(rate.context.counters[Counter.refusedRateLimited], 1);
  const found = new LineHarness({}, {
    clientLimits: ClientLimits.create({ found: { count: 1, periodMs: 60_000 } }),
  });
  found.send(`${ADA_EMAIL}\n${ADA_EMAIL}\n`);
  const foundLines = found.read();
  assert.equal(foundLines[0], `+${ADA_NAME}`);
  assert.match(foundLines[1], /^! /, "the second FOUND is over the found limit");
  assert.equal(found.context.counters[Counter.refusedFoundLimit], 1);
});

Deno.test("a line session is closed by its idle and frame timeouts", () => {
  const idle = new LineHarness({ idleTimeoutMs: 300, frameTimeoutMs: 200 });
  assert.equal(idle.session.deadline, START + 300);
  idle.tick(START + 300);
  assert.equal(idle.session.closeReason, "idle-timeout");
  assert.equal(idle.context.counters[Counter.idleTimeouts], 1);
  const frame = new LineHarness({ idleTimeoutMs: 300, frameTimeoutMs: 200 });
  frame.send("ada@exa"); // a line begun and not finished
  assert.equal(frame.session.deadline, START + 200);
  frame.tick(START + 200);
  assert.equal(frame.session.closeReason, "frame-timeout");
});

Deno.test("a draining line session answers, says goodbye in its own words, and lingers", () => {
  const h = new LineHarness();
  h.session.drain(h.now);
  h.send(`${ADA_EMAIL}\n`);
  assert.deepEqual(h.read(), [`+${ADA_NAME}`]);
  assert.equal(h.session.phase, "open");
  h.tick(h.now + DRAIN_GRACE_MS);
  assert.equal(h.session.phase, "ending");
  assert.deepEqual(h.read(), ["BYE"]);
  assert.ok(h.session.wantsHalfClose);
  h.session.halfClosed(h.now);
  h.session.receiveEnd(h.now);
  assert.equal(h.session.closeReason, "peer-closed");
  const pipeliner = new LineHarness();
  pipeliner.session.drain(START);
  pipeliner.send("ada@exa");
  assert.equal(
    pipeliner.session.deadline,
    START + DRAIN_READ_MS,
    "a half-sent line gets the read time",
  );
});

Deno.test("an upgrade waits for its reply to be written, then reads again once the handshake is done", () => {
  const h = new LineHarness({ idleTimeoutMs: 1000, frameTimeoutMs: 200, writeTimeoutMs: 500 });
  h.send(`${ADA_EMAIL}\nSTARTTLS\n`);
  assert.equal(h.session.wantsRead, false, "nothing more in clear");
  assert.equal(h.session.wantsTlsUpgrade, false, "the replies are not written yet");
  h.session.wrote(1, h.now);
  assert.equal(h.session.wantsTlsUpgrade, false, "a reply is still partly due");
  assert.deepEqual(h.read(), [ADA_NAME, "OK"], "the rest, its first byte taken already");
  assert.equal(h.session.wantsTlsUpgrade, true);
  assert.equal(h.session.wantsRead, false);
  h.session.handshakeStarted(h.now);
  assert.equal(h.session.wantsTlsUpgrade, false, "asked once");
  assert.equal(h.session.deadline, h.now + 200, "the handshake runs under the frame timeout");
  h.now += 50;
  h.session.handshakeDone(h.now);
  assert.equal(h.context.counters[Counter.tlsHandshakesOk], 1);
  assert.equal(h.session.wantsRead, true);
  h.send(`${ADA_EMAIL}\n`);
  assert.deepEqual(h.read(), [`+${ADA_NAME}`]);
  assert.equal(h.outcome(Outcome.other), 1, "the STARTTLS answer");
});

Deno.test("bytes sent behind an upgrade's request break the protocol, and no upgrade follows", () => {
  const h = new LineHarness();
  h.send(`STARTTLS\n${ADA_EMAIL}\n`);
  assert.deepEqual(h.read(), ["ERROR Bytes followed STARTTLS."]);
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.wantsTlsUpgrade, false);
  assert.equal(h.outcome(Outcome.protocolError), 1);
});

Deno.test("a handshake stalled after an upgrade is closed at the frame timeout", () => {
  const h = new LineHarness({ idleTimeoutMs: 1000, frameTimeoutMs: 200 });
  h.send("STARTTLS\n");
  assert.deepEqual(h.read(), ["OK"]);
  h.session.handshakeStarted(h.now);
  h.tick(h.now + 199);
  assert.equal(h.session.phase, "open");
  h.tick(h.now + 1);
  assert.equal(h.session.closeReason, "handshake-timeout");
  assert.equal(h.context.counters[Counter.handshakeTimeouts], 1);
});

Deno.test("a peer that closes before its upgrade gets its reply and no upgrade", () => {
  const h = new LineHarness();
  h.send("STARTTLS\n");
  h.session.receiveEnd(h.now);
  assert.equal(h.session.wantsTlsUpgrade, false);
  assert.deepEqual(h.read(), ["OK"]);
  assert.equal(h.session.wantsTlsUpgrade, false);
  assert.equal(h.session.closeReason, "peer-closed");
});

Deno.test("a failed handshake after an upgrade ends the session, to linger in clear", () => {
  const h = new LineHarness();
  h.send("STARTTLS\n");
  h.read();
  h.session.handshakeStarted(h.now);
  h.session.handshakeFailed(h.now, {
    kind: "failed",
    reason: "the handshake failed: wrong version number",
  });
  assert.equal(h.session.phase, "ending");
  assert.equal(h.session.outputLength, 0);
  assert.ok(h.session.wantsHalfClose);
});
