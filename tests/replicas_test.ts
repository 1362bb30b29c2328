/**
 * Three replicas behind a real HAProxy running deploy/haproxy.cfg (on free
 * loopback ports), as README "Running several servers" sets them up: each
 * replica a real server process with `--proxy-protocol` and a metrics port
 * for HAProxy's `/readyz` checks.
 *
 * - The PROXY v2 header carries the real client through HAProxy, so a
 *   replica's `--allow` applies to the client, not to HAProxy.
 * - A rolling restart of all three replicas, and a replica killed with
 *   SIGKILL, during a batch of lookups by the project client through
 *   HAProxy: every line is answered, correctly and in order.
 *
 * Covered elsewhere, not repeated here: the client failing over between
 * `--host` entries without HAProxy, and giving up with exit 2 (client/cli_test.ts);
 * `/readyz` while a replica drains (server/cli_test.ts, tests/deploy_haproxy_test.ts);
 * `--watch` following a ConfigMap swap in a real server (server/cli_test.ts).
 *
 * These tests need the `haproxy` command (`.ci/run` installs it from Debian).
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  decodeReply,
  encodeQuery,
  FrameDecoder,
  MAX_REPLY_BYTES,
  type Reply,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  TYPE_REPLY,
} from "../protocol.ts";
import { writeCsvBook } from "../testing/books.ts";
import { EVENT_DEADLINE_MS, withDeadline } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { HaproxyProcess, REPLICA_NAMES } from "../testing/haproxy.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { metricValue } from "../testing/metrics.ts";
import { makeTestPki } from "../testing/pki.ts";
import { type ProcessOutput, ServerProcess } from "../testing/processes.ts";
import { CLIENT_FLAGS, REPO_DIR } from "../testing/repo.ts";
import { WireClient } from "../testing/wire_client.ts";

/** Entries of the test book: person{i}@example.com is "Person {i}". */
const BOOK_ENTRIES = 5000;
/** Batch line i asks for person{i % QUERY_CYCLE}: one query in six is not in the book. */
const QUERY_CYCLE = 6000;

function batchLine(i: number): string {
  return `person${i % QUERY_CYCLE}@example.com`;
}

function expectedLine(i: number): string {
  return i % QUERY_CYCLE < BOOK_ENTRIES ? `Person ${i % QUERY_CYCLE}` : "";
}

/** How many of the first `lines` batch lines are not in the book. */
function missesIn(lines: number): number {
  let misses = 0;
  for (let i = 0; i < lines; i++) if (expectedLine(i) === "") misses++;
  return misses;
}

/** HAProxy sees its peer (the client's) address as this, and is the replicas' only trusted proxy. */
const HAPROXY_SOURCE = "127.0.0.1";

/**
 * Three replica processes on the ports a {@linkcode HaproxyProcess} sends
 * to, each with `--proxy-protocol`, trusting HAProxy only. Disposing of the
 * set kills whatever still runs.
 */
class Replicas implements AsyncDisposable {
  readonly #haproxy: HaproxyProcess;
  readonly #args: readonly string[];
  readonly #processes: (ServerProcess | undefined)[] = [];

  private constructor(haproxy: HaproxyProcess, args: readonly string[]) {
    this.#haproxy = haproxy;
    this.#args = args;
  }

  /** Starts the three replicas with `args` as well, and waits until HAProxy sees each one up. */
  static async start(haproxy: HaproxyProcess, args: readonly string[]): Promise<Replicas> {
    const replicas = new Replicas(haproxy, args);
    try {
      await Promise.all(REPLICA_NAMES.map((_, i) => replicas.#start(i)));
      return replicas;
    } catch (error) {
      await replicas[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** Replica `i`'s process, while it runs. */
  process(i: number): ServerProcess {
    const process = this.#processes[i];
    assert.ok(process !== undefined, `${REPLICA_NAMES[i]} is not running`);
    return process;
  }

  /** Replica `i`'s `/metrics` text. */
  async metrics(i: number): Promise<string> {
    const response = await fetch(`http://${LOOPBACK}:${this.#haproxy.metricsPorts[i]}/metrics`);
    assert.equal(response.status, 200);
    return await response.text();
  }

  /** The replicas holding a client connection now (HAProxy's checks go to the metrics port). */
  async withConnections(): Promise<number[]> {
    const open = await Promise.all(
      REPLICA_NAMES.map(async (_, i) =>
        metricValue(await this.metrics(i), "addrbook_connections_open")
      ),
    );
    return open.flatMap((count, i) => count > 0 ? [i] : []);
  }

  /**
   * A rolling deploy's step for replica `i`, as the README describes it:
   * SIGTERM; it drains and exits 0 while HAProxy marks it down; start it
   * again; wait until HAProxy marks it up.
   */
  async restart(i: number): Promise<void> {
    const process = this.process(i);
    process.signal("SIGTERM");
    const [status] = await Promise.all([
      process.exit(),
      this.#haproxy.waitForState(REPLICA_NAMES[i], /^DOWN/),
    ]);
    assert.equal(status.code, 0, `${REPLICA_NAMES[i]} drained and exited:\n${process.stderr.text}`);
    this.#processes[i] = undefined;
    await this.#start(i);
  }

  /** Kills replica `i` with SIGKILL and waits until it is gone and HAProxy marks it down. */
  async kill(i: number): Promise<void> {
    const process = this.process(i);
    process.signal("SIGKILL");
    await Promise.all([
      process.exit(),
      this.#haproxy.waitForState(REPLICA_NAMES[i], /^DOWN/),
    ]);
    this.#processes[i] = undefined;
  }

  /** Kills every replica still running. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#processes.map((process) => process?.[Symbol.asyncDispose]()));
  }

  async #start(i: number): Promise<void> {
    this.#processes[i] = await ServerProcess.start([
      "--port",
      String(this.#haproxy.replicaPorts[i]),
      "--metrics-port",
      String(this.#haproxy.metricsPorts[i]),
      "--proxy-protocol",
      "--trusted-proxy",
      `${HAPROXY_SOURCE}/32`,
      ...this.#args,
    ]);
    // Its /readyz answered 200: an UP from before any check means nothing.
    await this.#haproxy.waitForState(REPLICA_NAMES[i], /^UP L7OK$/);
  }
}

/** Runs `body` with HAProxy and three replicas serving the test book with `args` as well. */
async function withReplicas(
  args: readonly string[],
  body: (haproxy: HaproxyProcess, replicas: Replicas) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir("addrbook_replicas_test_");
  const rows: [string, string][] = Array.from(
    { length: BOOK_ENTRIES },
    (_, i) => [`person${i}@example.com`, `Person ${i}`],
  );
  const book = await writeCsvBook(dir.path, rows);
  await using haproxy = await HaproxyProcess.start(dir.path);
  await using replicas = await Replicas.start(haproxy, ["--data", book, ...args]);
  try {
    await body(haproxy, replicas);
  } catch (error) {
    // What HAProxy logged (one line per connection, with retries and redispatches) says why.
    throw new Error(`${error}\nHAProxy's log:\n${haproxy.log.split("\n").slice(-40).join("\n")}`, {
      cause: error,
    });
  }
}

// ---------------------------------------------------------------------------
// A client with a chosen source address

/** One query over a new connection from `source` to `port`: the reply, then the server's close. */
async function askFrom(source: string, port: number, email: string): Promise<Reply[]> {
  const socket = net.connect({ host: LOOPBACK, port, localAddress: source });
  const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  const ended = new Promise<Reply[]>((resolve, reject) => {
    const replies: Reply[] = [];
    socket.on("connect", () => socket.write(encodeQuery(email)));
    socket.on("data", (chunk: Uint8Array) => {
      decoder.push(new Uint8Array(chunk));
      for (let payload; (payload = decoder.next()) !== null;) {
        replies.push(decodeReply(payload));
        // A FORBIDDEN is the last reply; an answered query is all this client wanted.
        if (replies.at(-1)!.status !== STATUS_FORBIDDEN) socket.end();
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(replies));
  });
  try {
    return await withDeadline(ended, `a reply from ${port} to ${source}`, EVENT_DEADLINE_MS);
  } finally {
    socket.destroy();
  }
}

Deno.test("through HAProxy, the PROXY v2 header carries the real client: a replica's --allow applies to it", async () => {
  await withReplicas(["--allow", "127.0.0.2/32"], async (haproxy, replicas) => {
    // HAProxy itself (127.0.0.1) is not allowed: only the header can let 127.0.0.2 in.
    const tries = 2 * REPLICA_NAMES.length;
    for (let i = 0; i < tries; i++) {
      assert.deepEqual(await askFrom("127.0.0.2", haproxy.frontendPort, batchLine(i)), [
        { status: STATUS_FOUND, text: expectedLine(i) },
      ]);
    }
    for (let i = 0; i < tries; i++) {
      assert.deepEqual(await askFrom("127.0.0.3", haproxy.frontendPort, batchLine(i)), [
        {
          status: STATUS_FORBIDDEN,
          text: "This client's address is not in the server's --allow list.",
        },
      ]);
    }
    // The refusals came from the replicas, which saw the real client's address.
    const metrics = await Promise.all(REPLICA_NAMES.map((_, i) => replicas.metrics(i)));
    const refused = metrics.map((text) =>
      metricValue(text, "addrbook_refusals_total", '{reason="not_allowed"}')
    );
    assert.equal(refused.reduce((sum, n) => sum + n, 0), tries, `refusals per replica: ${refused}`);
    const logs = REPLICA_NAMES.map((_, i) => replicas.process(i).stderr.text).join("\n");
    assert.match(logs, /refused.*127\.0\.0\.3/);
    assert.doesNotMatch(logs, /refused.*127\.0\.0\.[12]\b/);
  });
});

Deno.test("through HAProxy passing TLS through, replicas read the PROXY v2 header in clear, then speak TLS", async () => {
  await using pki = await makeTestPki();
  const tls = ["--tls-cert", pki.server.certificatePath, "--tls-key", pki.server.keyPath];
  await withReplicas(tls, async (haproxy, replicas) => {
    const tries = 2 * REPLICA_NAMES.length;
    for (let i = 0; i < tries; i++) {
      using client = await WireClient.connectTls(
        LOOPBACK,
        haproxy.frontendPort,
        pki.ca.certificate,
        { resets: "throw" },
      );
      assert.deepEqual(await client.query(batchLine(i)), {
        status: STATUS_FOUND,
        text: expectedLine(i),
      });
    }
    const metrics = await Promise.all(REPLICA_NAMES.map((_, i) => replicas.metrics(i)));
    const handshakes = metrics.map((text) =>
      metricValue(text, "addrbook_tls_handshakes_total", '{result="ok"}')
    );
    assert.equal(handshakes.reduce((sum, n) => sum + n, 0), tries, `per replica: ${handshakes}`);
  });
});

// ---------------------------------------------------------------------------
// The project client's batch mode through HAProxy, while replicas go away

/** Lines written to the client per tick while the replicas change: a steady 10,000 lines/s. */
const LINES_PER_TICK = 500;
const TICK_MS = 50;
/** The share of the batch written before the replicas change, and held back until they have. */
const LEAD_SHARE = 0.1;
const TAIL_SHARE = 0.1;
/** Bounds a whole batch, changes included. */
const BATCH_DEADLINE_MS = 120_000;

/**
 * Runs `deno task client` in batch mode through HAProxy on `lines` lines,
 * written at a steady pace as a real feed would come: once the first
 * {@linkcode LEAD_SHARE} is answered it runs `change` (restarts, kills),
 * and it holds back the last {@linkcode TAIL_SHARE} until `change` is
 * done, so every change happens mid-batch.
 */
async function runBatchWhile(
  port: number,
  lines: number,
  change: () => Promise<void>,
): Promise<ProcessOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...CLIENT_FLAGS, "--host", LOOPBACK, "--port", String(port)],
    cwd: REPO_DIR,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const stop = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited.
    }
  };
  let stdout = "";
  let answered = 0;
  let leadAnswered!: () => void;
  const lead = Math.floor(lines * LEAD_SHARE);
  const leadDone = new Promise<void>((resolve) => leadAnswered = resolve);
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += chunk;
      answered += chunk.split("\n").length - 1;
      if (answered >= lead) leadAnswered();
    }
    leadAnswered(); // a client that ended early must not leave the feed waiting
  })();
  const encoder = new TextEncoder();
  const input = (from: number, to: number) =>
    encoder.encode(
      Array.from({ length: to - from }, (_, n) => batchLine(from + n) + "\n").join(""),
    );
  const writer = child.stdin.getWriter();
  const feeding = (async () => {
    await writer.write(input(0, lead));
    await leadDone;
    let changed = false;
    const changing = change().finally(() => changed = true);
    changing.catch(() => {}); // awaited below, once the feed has caught up
    const tail = lines - Math.floor(lines * TAIL_SHARE);
    for (let next = lead; next < tail; next += LINES_PER_TICK) {
      await writer.write(input(next, Math.min(tail, next + LINES_PER_TICK)));
      // A pace, not a wait for an event: the load keeps coming while the replicas change.
      if (!changed) await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
    await changing;
    await writer.write(input(tail, lines));
    await writer.close();
  })();
  try {
    await withDeadline(
      Promise.all([feeding, reading]),
      "the batch, and the changes during it",
      BATCH_DEADLINE_MS,
    );
    const { code } = await withDeadline(child.status, "the client to exit", EVENT_DEADLINE_MS);
    return { code, stdout, stderr: await stderr };
  } catch (error) {
    stop();
    await child.status;
    throw new Error(`${error}\nThe client's stderr:\n${await stderr}`, { cause: error });
  } finally {
    stop();
    await child.status;
    await writer.close().catch(() => {});
    await reading.catch(() => {});
    await feeding.catch(() => {});
  }
}

/** Checks that the batch answered every one of its `lines` lines, correctly and in order. */
function assertEveryLineAnswered(run: ProcessOutput, lines: number): void {
  assert.equal(
    run.stderr,
    `client: ${missesIn(lines)} of ${lines} not found.\n`,
    "no error, no retry given up",
  );
  assert.equal(run.code, 1, "some lines are not in the book");
  const output = run.stdout.split("\n");
  assert.equal(output.length, lines + 1, "one line per query, and the last newline");
  for (let i = 0; i < lines; i++) {
    if (output[i] !== expectedLine(i)) {
      assert.fail(`line ${i + 1}: ${JSON.stringify(output[i])}, not ${expectedLine(i)}`);
    }
  }
}

Deno.test("a rolling restart of all three replicas during a batch of 150,000 lookups through HAProxy loses no line", async () => {
  const lines = 150_000;
  await withReplicas([], async (haproxy, replicas) => {
    const holders: boolean[] = [];
    const run = await runBatchWhile(haproxy.frontendPort, lines, async () => {
      const left = REPLICA_NAMES.map((_, i) => i);
      while (left.length > 0) {
        // The replica holding the client's connection goes first, so the client must move.
        const held = await replicas.withConnections();
        const next = left.find((i) => held.includes(i));
        holders.push(next !== undefined);
        await replicas.restart(left.splice(left.indexOf(next ?? left[0]), 1)[0]);
      }
    });
    assertEveryLineAnswered(run, lines);
    assert.equal(holders[0], true, "the first replica restarted held the client's connection");
  });
});

Deno.test("a replica killed with SIGKILL mid-batch through HAProxy loses no line", async () => {
  const lines = 60_000;
  await withReplicas([], async (haproxy, replicas) => {
    let killed = -1;
    const run = await runBatchWhile(haproxy.frontendPort, lines, async () => {
      // The replica that holds the client's connection, so that it is the one cut.
      [killed] = await replicas.withConnections();
      assert.ok(killed !== undefined, "a replica holds the client's connection");
      await replicas.kill(killed);
    });
    assertEveryLineAnswered(run, lines);
    const survivors = REPLICA_NAMES.map((_, i) => i).filter((i) => i !== killed);
    const moved = await Promise.all(
      survivors.map(async (i) =>
        metricValue(await replicas.metrics(i), "addrbook_connections_total")
      ),
    );
    assert.ok(moved.some((count) => count > 0), "the client went on on another replica");
  });
});
