import assert from "node:assert/strict";
import { StartError } from "./error.ts";
import { answerStatusRequest, LOADING_STATUS, type ServerStatus, StatusEndpoint } from "./http.ts";
import { LOOPBACK } from "../testing/loopback.ts";

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
