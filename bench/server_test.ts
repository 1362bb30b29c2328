import assert from "node:assert/strict";
import { LISTENING_LINE } from "./server.ts";

Deno.test("LISTENING_LINE finds the address in text and JSON log lines", () => {
  const text =
    "2026-01-01T00:00:00.000Z info loaded 5 entries from b.csv; listening on 127.0.0.1:4000";
  assert.deepEqual(LISTENING_LINE.exec(text)?.slice(1), [undefined, "127.0.0.1", "4000"]);
  const json = '{"level":"info","msg":"loaded 5 entries; listening on 127.0.0.1:4001","workers":1}';
  assert.deepEqual(LISTENING_LINE.exec(json)?.slice(1), [undefined, "127.0.0.1", "4001"]);
  const v6 = "info listening on tls://[::1]:4002 workers=1";
  assert.deepEqual(LISTENING_LINE.exec(v6)?.slice(1), ["tls://", "[::1]", "4002"]);
});
