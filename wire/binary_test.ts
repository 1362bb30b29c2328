import assert from "node:assert/strict";
import fc from "fast-check";
import { type AddressBook, AddressBookBuilder } from "../book/addressbook.ts";
import { BINARY_FRONT_END } from "./binary.ts";
import { answerQuery } from "./binary_answer.ts";
import { type Conversation, NO_REQUEST, Outcome, ReplyBuffer } from "./front_end.ts";
import { TYPE_QUERY } from "../protocol.ts";
import { concat, frame } from "../testing/frames.ts";
import { COUNTERS_PER_THREAD } from "../session/counters.ts";

const encoder = new TextEncoder();

function bookOf(prefix: string, count: number): AddressBook {
  const builder = new AddressBookBuilder();
  for (let i = 0; i < count; i++) builder.add(`user${i}@example.com`, `${prefix} ${i}`);
  return builder.build();
}

const OLD_BOOK = bookOf("Old", 300);
const NEW_BOOK = bookOf("New", 200);

/** A connection of the binary front end, with the session's part played by hand. */
class Connection {
  readonly conversation: Conversation = BINARY_FRONT_END.connect(
    new Float64Array(COUNTERS_PER_THREAD),
  );
  readonly output = new ReplyBuffer();
  /** The queries sent and not yet answered, in order. */
  readonly waiting: Uint8Array[] = [];
  /** Each reply written, and the reply expected of the book it was answered from. */
  readonly replies: { got: Uint8Array; expected: Uint8Array }[] = [];

  /** Answers what is complete, at most `limit` queries (a session stops when its output is full). */
  answer(book: AddressBook, limit: number): void {
    for (let i = 0; i < limit; i++) {
      const before = this.output.length;
      const outcome = this.conversation.answerNext(this.output, book, undefined);
      if (outcome === NO_REQUEST) return;
      assert.notEqual(outcome, Outcome.protocolError);
      const query = this.waiting.shift()!;
      this.replies.push({
        got: this.output.bytes.slice(before, this.output.length),
        expected: answerQuery(book, query),
      });
    }
    // Stopped with requests left, as a session does when replies wait: it holds them.
    this.conversation.hold();
  }
}

const query = fc.oneof(
  fc.integer({ min: 0, max: 400 }).map((i) => encoder.encode(` USER${i}@Example.com`)),
  fc.constantFrom("", "@", "zoë@example.com", "a b@c").map((text) => encoder.encode(text)),
  fc.uint8Array({ maxLength: 12 }),
);

/** One step: a chunk of some queries' bytes to a connection, or its answering, maybe with the other book. */
const step = fc.record({
  connection: fc.integer({ min: 0, max: 1 }),
  queries: fc.array(query, { maxLength: 40 }),
  /** Where the chunk is cut: a frame split across reads, or several frames in one. */
  cut: fc.nat(),
  answerLimit: fc.integer({ min: 0, max: 50 }),
  swapBook: fc.boolean(),
});

Deno.test("property: answers are the book's for any frames, however they arrive and interleave", () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 12 }), (steps) => {
      const connections = [new Connection(), new Connection()];
      /** Bytes sent to each connection but not yet received by it. */
      const unsent = [new Uint8Array(0), new Uint8Array(0)];
      let book = OLD_BOOK;
      for (const { connection, queries, cut, answerLimit, swapBook } of steps) {
        const peer = connections[connection];
        const frames = queries.map((bytes) => frame(TYPE_QUERY, bytes));
        peer.waiting.push(...queries);
        const stream = concat([unsent[connection], ...frames]);
        const at = stream.length === 0 ? 0 : cut % (stream.length + 1);
        unsent[connection] = stream.slice(at);
        // The driver reads into one shared buffer, reused for every connection.
        SHARED_INPUT.set(stream.subarray(0, at));
        peer.conversation.receive(SHARED_INPUT, at);
        if (swapBook) book = book === OLD_BOOK ? NEW_BOOK : OLD_BOOK;
        peer.answer(book, answerLimit);
      }
      for (const [i, peer] of connections.entries()) {
        SHARED_INPUT.set(unsent[i]);
        peer.conversation.receive(SHARED_INPUT, unsent[i].length);
        peer.answer(book, Infinity);
        assert.equal(peer.waiting.length, 0, "every query was answered");
        for (const { got, expected } of peer.replies) assert.deepEqual(got, expected);
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("a read of many queries is answered in order, each from the book", () => {
  const peer = new Connection();
  const queries = Array.from(
    { length: 100 },
    (_, i) => encoder.encode(`user${(i * 7) % 350}@example.com`),
  );
  peer.waiting.push(...queries);
  const stream = concat(queries.map((bytes) => frame(TYPE_QUERY, bytes)));
  peer.conversation.receive(stream, stream.length);
  peer.answer(OLD_BOOK, Infinity);
  assert.equal(peer.replies.length, 100);
  for (const { got, expected } of peer.replies) assert.deepEqual(got, expected);
});

const SHARED_INPUT = new Uint8Array(1 << 16);
