/**
 * Tests of what server/start.ts adds to serving (which tests/server_test.ts
 * covers): readiness as the status endpoint reports it, and the book's
 * fingerprint in the metrics.
 */

import assert from "node:assert/strict";
import { STATUS_FOUND, TYPE_QUERY } from "../protocol.ts";
import { StatusEndpoint } from "./http.ts";
import { startServer } from "./start.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import { header } from "../testing/frames.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { WireClient } from "../testing/wire_client.ts";

async function statusOf(endpoint: StatusEndpoint, path: string, method = "GET"): Promise<number> {
  const response = await fetch(`http://${LOOPBACK}:${endpoint.addr.port}${path}`, { method });
  await response.body?.cancel();
  return response.status;
}

Deno.test("/readyz is 503 before the server starts, 200 while it serves, 503 from the start of a shutdown", async () => {
  const endpoint = StatusEndpoint.open(LOOPBACK, 0);
  try {
    assert.equal(await statusOf(endpoint, "/readyz"), 503, "a book is still loading");
    assert.equal(await statusOf(endpoint, "/healthz"), 200);
    const server = await startServer({
      book: makeBook(),
      hostname: LOOPBACK,
      port: 0,
      statusEndpoint: endpoint,
    });
    assert.equal(server.metricsAddr, endpoint.addr);
    const held = await WireClient.connect(server.addr.port);
    try {
      assert.equal((await held.query(PEOPLE[0][0])).status, STATUS_FOUND);
      assert.equal(server.ready, true);
      assert.equal(await statusOf(endpoint, "/readyz"), 200);
      assert.equal(await statusOf(endpoint, "/readyz", "HEAD"), 200);
      // Half a frame holds the drain open until the connection closes.
      await held.write(header(TYPE_QUERY, 20));
      const shutdown = server.shutdown(30_000);
      assert.equal(server.ready, false);
      assert.equal(await statusOf(endpoint, "/readyz"), 503, "draining");
      assert.equal(await statusOf(endpoint, "/readyz", "HEAD"), 503);
      assert.equal(await statusOf(endpoint, "/healthz"), 200, "alive while draining");
      held.close();
      await shutdown;
    } finally {
      held.close();
      await server.close();
    }
    await assert.rejects(statusOf(endpoint, "/healthz"), "the endpoint closes with the server");
  } finally {
    await endpoint.close();
  }
});

Deno.test("the metrics show the fingerprint of the book served, and of the new one after a reload", async () => {
  const fingerprints = new Map([[PEOPLE.length, "aa".repeat(32)], [1, "bb".repeat(32)]]);
  const server = await startServer({
    book: makeBook(),
    hostname: LOOPBACK,
    port: 0,
    loadBook: () => Promise.resolve(makeBook(PEOPLE.slice(0, 1))),
    fingerprint: (book) => fingerprints.get(book.size),
  });
  try {
    assert.match(server.metrics(), /^addrbook_book_info\{sha256="(aa){32}"\} 1$/m);
    assert.equal(server.fingerprint, "aa".repeat(32));
    await server.reload();
    assert.equal(server.fingerprint, "bb".repeat(32));
    assert.match(server.metrics(), /^addrbook_book_info\{sha256="(bb){32}"\} 1$/m);
    assert.doesNotMatch(server.metrics(), /sha256="(aa){32}"/);
  } finally {
    await server.close();
  }
});
