/**
 * Throws random byte streams at one live server over many connections:
 * valid and invalid frames, random bytes, random chunkings, half-closes and
 * abrupt closes, on each event loop. Each stream's replies are checked
 * against a small model of the protocol (modelReplies in testing/model.ts),
 * written independently of the server's codec.
 *
 * Seeded, so a failure is reproducible; bounded to a few seconds.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import type { IoKind } from "../server.ts";
import { type Reply, STATUS_FOUND, STATUS_PROTOCOL_ERROR } from "../protocol.ts";
import { yieldToEventLoop } from "../testing/deadlines.ts";
import { concat } from "../testing/frames.ts";
import { type TestServer, withTestServer } from "../testing/in_process_server.ts";
import { testOnEachLoop } from "../testing/io_loops.ts";
import { waitForOpenConnections } from "../testing/metrics.ts";
import { modelReplies, streamPiece } from "../testing/model.ts";
import { withWireClient } from "../testing/wire_client.ts";

const SEED = 20261124;
/** Property runs; each runs up to {@linkcode MAX_CONNECTIONS_PER_RUN} connections at once. */
const NUM_RUNS = 300;
/** Fewer runs for chunked streams, which yield to the event loop between writes. */
const NUM_RUNS_CHUNKED = 100;
const MAX_CONNECTIONS_PER_RUN = 8;
/**
 * Streams written in one write stay under the server's first read size, so
 * the server reads each such stream whole.
 */
const ONE_WRITE_MAX_BYTES = 4000;

/** How a client ends its connection. */
type Ending =
  /** Half-closes after writing and reads every reply: they must be exactly the model's. */
  | { kind: "half-close" }
  /** Closes after writing `chunks` of its chunks, reading nothing. */
  | { kind: "abrupt"; chunks: number }
  /** Writes everything, reads `replies` replies, then closes. */
  | { kind: "read-some"; replies: number };

const ending: fc.Arbitrary<Ending> = fc.oneof(
  { arbitrary: fc.constant({ kind: "half-close" as const }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant("abrupt" as const), chunks: fc.nat(20) }), weight: 1 },
  {
    arbitrary: fc.record({ kind: fc.constant("read-some" as const), replies: fc.nat(5) }),
    weight: 1,
  },
);

interface Scenario {
  stream: Uint8Array;
  /** Sizes of successive writes, used in turn and cyclically; empty means one write. */
  chunkSizes: number[];
  ending: Ending;
}

function scenario(chunked: boolean): fc.Arbitrary<Scenario> {
  return fc.record({
    pieces: fc.array(streamPiece, { maxLength: 15 }),
    chunkSizes: chunked
      ? fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 6 })
      : fc.constant([]),
    ending,
  }).map(({ pieces, chunkSizes, ending }) => {
    let stream = concat(pieces);
    if (!chunked) stream = stream.subarray(0, ONE_WRITE_MAX_BYTES);
    return { stream, chunkSizes, ending };
  });
}

function chunksOf(stream: Uint8Array, sizes: number[]): Uint8Array[] {
  if (sizes.length === 0) return [stream];
  const chunks = [];
  for (let at = 0, i = 0; at < stream.length; i++) {
    const size = sizes[i % sizes.length];
    chunks.push(stream.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

// --- Running a scenario ---

/** Whether a write failed because the server closed first, as it does after a protocol error. */
function isClosedByPeer(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset;
}

/** Checks the framing rules every connection obeys: status 3 only last. */
function assertWellFormed(replies: Reply[]): void {
  const error = replies.findIndex((reply) => reply.status === STATUS_PROTOCOL_ERROR);
  assert.ok(error < 0 || error === replies.length - 1, "PROTOCOL_ERROR is the last reply");
}

async function runScenario(port: number, { stream, chunkSizes, ending }: Scenario) {
  await withWireClient(port, async (client) => {
    const chunks = chunksOf(stream, chunkSizes);
    const toWrite = ending.kind === "abrupt" ? chunks.slice(0, ending.chunks) : chunks;
    const expected = modelReplies(stream);
    // Read while writing, so a long stream cannot fill both directions' buffers.
    const reading = ending.kind === "half-close"
      ? client.readUntilClosed()
      : ending.kind === "read-some"
      ? client.readReplies(Math.min(ending.replies, expected.length))
      : Promise.resolve([]);
    reading.catch(() => {});
    let closedByPeer = false;
    for (const chunk of toWrite) {
      try {
        await client.write(chunk);
      } catch (error) {
        if (!isClosedByPeer(error)) throw error;
        closedByPeer = true;
        break;
      }
      if (chunkSizes.length > 0) await yieldToEventLoop();
    }
    if (ending.kind === "half-close" && !closedByPeer) {
      try {
        await client.closeWrite();
      } catch (error) {
        if (!isClosedByPeer(error)) throw error;
      }
    }
    const replies = await reading;
    assertWellFormed(replies);
    const got = replies.map(({ status, text }) =>
      status === STATUS_FOUND ? { status, text } : { status }
    );
    if (ending.kind === "half-close") {
      assert.deepEqual(got, expected, "the replies are the model's");
      assert.ok(client.ending !== undefined);
    } else {
      assert.deepEqual(got, expected.slice(0, got.length), "the replies begin as the model's");
    }
  });
}

async function fuzzServer(io: IoKind, chunked: boolean): Promise<void> {
  await withTestServer({ io }, async ({ port, server }: TestServer) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(scenario(chunked), { minLength: 1, maxLength: MAX_CONNECTIONS_PER_RUN }),
        async (scenarios) => {
          await Promise.all(scenarios.map((s) => runScenario(port, s)));
        },
      ),
      { numRuns: chunked ? NUM_RUNS_CHUNKED : NUM_RUNS, seed: SEED },
    );
    // After all of it, the server still serves and has let every connection go.
    await withWireClient(port, async (client) => {
      assert.deepEqual(await client.query(" ADA@example.com "), {
        status: STATUS_FOUND,
        text: "Ada Lovelace",
      });
      await waitForOpenConnections(server, 1, "every fuzzing connection to be closed");
    });
  });
}

testOnEachLoop(
  "random streams, each in one write, get exactly the protocol's replies",
  (io) => fuzzServer(io, false),
);

testOnEachLoop(
  "random streams in random chunkings get exactly the protocol's replies",
  (io) => fuzzServer(io, true),
);
