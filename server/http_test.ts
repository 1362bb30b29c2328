import assert from "node:assert/strict";
import { StartError } from "./error.ts";
import {
  answerStatusRequest,
  LOADING_STATUS,
  parseRequestHead,
  type ServerStatus,
  STATUS_MAX_HEAD_BYTES,
  StatusEndpoint,
} from "./http.ts";
import { concat } from "../testing/frames.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { SourceBoundConn } from "../testing/wire_client.ts";

const READY: ServerStatus = { ready: () => true, metrics: () => "addrbook_book_entries 3\n" };

async function answer(path: string, status: ServerStatus, method = "GET") {
  const response = answerStatusRequest(new Request(`http://x${path}`, { method }), status);
  return { status: response.status, body: await response.text(), headers: response.headers };
}

Deno.test("/healthz answers 200 whether or not the server is ready", async () => {
  for (const status of [LOADING_STATUS, READY]) {
    assert.deepEqual((await answer("/healthz", status)).status, 200);
  }
});

Deno.test("/readyz answers 200 when ready and 503 while loading or draining", async () => {
  assert.equal((await answer("/readyz", READY)).status, 200);
  const loading = await answer("/readyz", LOADING_STATUS);
  assert.equal(loading.status, 503);
  assert.match(loading.body, /not ready/);
});

Deno.test("/metrics serves the Prometheus text once there is a book, 503 before", async () => {
  const ready = await answer("/metrics", READY);
  assert.equal(ready.status, 200);
  assert.equal(ready.body, "addrbook_book_entries 3\n");
  assert.match(ready.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  assert.equal((await answer("/metrics", LOADING_STATUS)).status, 503);
});

Deno.test("every path answers HEAD as GET, refuses other methods with 405, and others are 404", async () => {
  for (const path of ["/metrics", "/healthz", "/readyz"]) {
    assert.equal((await answer(path, READY, "HEAD")).status, 200, path);
    const post = await answer(path, READY, "POST");
    assert.equal(post.status, 405, path);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  }
  for (const path of ["/", "/metrics/", "/ready", "/healthz/x"]) {
    const missing = await answer(path, READY);
    assert.equal(missing.status, 404, path);
    assert.match(missing.body, /\/metrics, \/healthz and \/readyz/);
  }
});

Deno.test("StatusEndpoint serves over HTTP and follows a replaced status", async () => {
  const endpoint = StatusEndpoint.open(LOOPBACK, 0);
  try {
    const url = `http://${LOOPBACK}:${endpoint.addr.port}`;
    const before = await fetch(`${url}/readyz`);
    await before.body?.cancel();
    assert.equal(before.status, 503);
    endpoint.status = READY;
    const after = await fetch(`${url}/readyz`);
    await after.body?.cancel();
    assert.equal(after.status, 200);
    const head = await fetch(`${url}/healthz`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  } finally {
    await endpoint.close();
    await endpoint.close();
  }
});

Deno.test("StatusEndpoint.open refuses a port in use with a StartError", () => {
  const taken = Deno.listen({ hostname: LOOPBACK, port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    assert.throws(() => StatusEndpoint.open(LOOPBACK, port), (error: unknown) => {
      assert.ok(error instanceof StartError);
      assert.equal(
        error.message,
        `Cannot serve metrics on 127.0.0.1:${port}: the port is already in use.`,
      );
      return true;
    });
  } finally {
    taken.close();
  }
});

// --- The port's own defences: request heads, access, a connection cap, a deadline ---

const encoder = new TextEncoder();

/** Sends `request` (nothing when empty) from `source` and reads the raw answer to its end. */
async function rawExchange(port: number, request: string, source = LOOPBACK): Promise<string> {
  const conn = await SourceBoundConn.connect(port, source, LOOPBACK);
  try {
    if (request !== "") await conn.write(encoder.encode(request));
    return await readToEnd(conn);
  } finally {
    conn.close();
  }
}

async function readToEnd(conn: { read(buffer: Uint8Array): Promise<number | null> }) {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  for (let i = 0; i < 1000; i++) {
    let read: number | null;
    try {
      read = await conn.read(buffer);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) break;
      throw error;
    }
    if (read === null) break;
    chunks.push(buffer.slice(0, read));
  }
  return new TextDecoder().decode(concat(chunks));
}

Deno.test("parseRequestHead reads the request line and refuses garbage, oversize and odd targets", () => {
  const parse = (text: string) => parseRequestHead(encoder.encode(text));
  assert.deepEqual(parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), {
    kind: "request",
    method: "GET",
    path: "/metrics",
  });
  assert.deepEqual(parse("HEAD http://h:1/readyz HTTP/1.0\n\n"), {
    kind: "request",
    method: "HEAD",
    path: "/readyz",
  });
  assert.deepEqual(parse("GET /healthz HTTP/1.1\r\nHost: a\r\n"), { kind: "incomplete" });
  for (
    const bad of ["GET /x\r\n\r\n", "\x16\x03\x01 / HTTP/1.1\r\n\r\n", "GET x HTTP/1.1\r\n\r\n"]
  ) {
    assert.equal((parse(bad) as { status?: number }).status, 400, JSON.stringify(bad));
  }
  const huge = parse(`GET / HTTP/1.1\r\nX: ${"a".repeat(STATUS_MAX_HEAD_BYTES)}`);
  assert.equal((huge as { status?: number }).status, 431);
});

Deno.test("StatusEndpoint answers garbage with 400 and a huge head with 431, then closes", async () => {
  const endpoint = StatusEndpoint.open(LOOPBACK, 0, READY);
  try {
    const port = endpoint.addr.port;
    assert.match(await rawExchange(port, "hello\r\n\r\n"), /^HTTP\/1\.1 400 /);
    const huge = `GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`;
    assert.match(await rawExchange(port, huge), /^HTTP\/1\.1 431 /);
    const answer = await rawExchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(answer, /\r\nconnection: close\r\n/);
    assert.ok(answer.endsWith("\r\n\r\naddrbook_book_entries 3\n"), answer);
  } finally {
    await endpoint.close();
  }
});

Deno.test("StatusEndpoint obeys --allow and protected mode before reading a byte, and lets trusted proxies in", async () => {
  const access = { allow: ["127.0.0.2/32"], protectedMode: false, proxyProtocol: false };
  const allowing = StatusEndpoint.open(LOOPBACK, 0, READY, { access });
  const proxied = StatusEndpoint.open(LOOPBACK, 0, READY, {
    access: { ...access, proxyProtocol: true, trustedProxies: "127.0.0.3/32" },
  });
  const guarded = StatusEndpoint.open(LOOPBACK, 0, READY, {
    access: { protectedMode: true, proxyProtocol: false },
  });
  try {
    const request = "GET /readyz HTTP/1.1\r\n\r\n";
    assert.match(await rawExchange(allowing.addr.port, request, "127.0.0.2"), /^HTTP\/1\.1 200 /);
    const refused = await rawExchange(allowing.addr.port, "", "127.0.0.3");
    assert.match(refused, /^HTTP\/1\.1 403 /, "refused with nothing sent");
    assert.match(await rawExchange(proxied.addr.port, request, "127.0.0.3"), /^HTTP\/1\.1 200 /);
    assert.match(await rawExchange(proxied.addr.port, "", "127.0.0.4"), /^HTTP\/1\.1 403 /);
    // Loopback is all protected mode lets in, and all a test can connect from.
    assert.match(await rawExchange(guarded.addr.port, request, "127.0.0.5"), /^HTTP\/1\.1 200 /);
  } finally {
    await Promise.all([allowing.close(), proxied.close(), guarded.close()]);
  }
});

Deno.test("StatusEndpoint holds at most maxConnections; more get 503 at once, and room comes back", async () => {
  const endpoint = StatusEndpoint.open(LOOPBACK, 0, READY, { maxConnections: 4 });
  const idle: Deno.TcpConn[] = [];
  try {
    const port = endpoint.addr.port;
    for (let i = 0; i < 4; i++) idle.push(await Deno.connect({ hostname: LOOPBACK, port }));
    // The fifth is answered once the four are known to the endpoint; accept order is FIFO.
    assert.match(await rawExchange(port, ""), /^HTTP\/1\.1 503 /);
    idle.pop()!.close();
    const deadline = Date.now() + 5000;
    let answer = "";
    while (Date.now() < deadline) {
      answer = await rawExchange(port, "GET /healthz HTTP/1.1\r\n\r\n");
      if (answer.startsWith("HTTP/1.1 200 ")) break;
    }
    assert.match(answer, /^HTTP\/1\.1 200 /, "a slot frees when a connection closes");
  } finally {
    idle.forEach((conn) => conn.close());
    await endpoint.close();
  }
});

Deno.test("StatusEndpoint cuts a slow sender at its deadline", async () => {
  const timeoutMs = 300;
  const endpoint = StatusEndpoint.open(LOOPBACK, 0, READY, { timeoutMs });
  const conn = await Deno.connect({ hostname: LOOPBACK, port: endpoint.addr.port });
  try {
    const started = Date.now();
    const request = encoder.encode("GET /healthz HTTP/1.1\r\nX: slow\r\n\r\n");
    let sent = 0;
    const ended = readToEnd(conn);
    let cut = false;
    ended.then(() => cut = true);
    for (; sent < request.length && !cut && Date.now() - started < 5000; sent++) {
      await conn.write(request.subarray(sent, sent + 1)).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50)); // the slow sender's pace
    }
    assert.equal(await ended, "", "closed without an answer");
    assert.ok(sent < request.length, `cut after ${sent} of ${request.length} bytes`);
    assert.ok(Date.now() - started < timeoutMs + 1000);
  } finally {
    conn.close();
    await endpoint.close();
  }
});
