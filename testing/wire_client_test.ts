/**
 * Tests of the tests' protocol client against small servers written here:
 * the ends it tells apart (a FIN, a reset, an end inside a frame), what a
 * reset does under each `resets` option, and the source address
 * a bound client connects from.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { encodeReply, STATUS_FOUND, STATUS_NOT_FOUND } from "../protocol.ts";
import { writeAll } from "../common/write_all.ts";
import { waitFor } from "./deadlines.ts";
import { concat } from "./frames.ts";
import { LOOPBACK } from "./loopback.ts";
import { WireClient, type WireConn, withWireClient, withWireClientFrom } from "./wire_client.ts";

/** Serves one connection with `serve`, then closes it; the listener closes on disposal. */
function serveOne(serve: (conn: Deno.TcpConn) => Promise<void>): AsyncDisposable & {
  port: number;
} {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await serve(conn);
    } finally {
      conn.close();
    }
  })();
  return {
    port: listener.addr.port,
    [Symbol.asyncDispose]: async () => {
      listener.close();
      await served;
    },
  };
}

/**
 * A connection its server resets (`resetAndDestroy`, a close with SO_LINGER
 * 0) once the client's first bytes arrive; the client is made by `connect`.
 */
async function resetConnection<C extends WireConn>(
  connect: (port: number) => Promise<WireClient<C>>,
): Promise<AsyncDisposable & { client: WireClient<C> }> {
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.resetAndDestroy());
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const client = await connect((server.address() as net.AddressInfo).port);
  await client.write(new Uint8Array(10));
  return {
    client,
    [Symbol.asyncDispose]: async () => {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

Deno.test("WireClient reads every reply, then the FIN, as the end it is", async () => {
  await using server = serveOne(async (conn) => {
    await writeAll(
      conn,
      concat([encodeReply(STATUS_FOUND, "Ada Lovelace"), encodeReply(STATUS_NOT_FOUND, "nobody")]),
    );
  });
  await withWireClient(server.port, async (client) => {
    assert.deepEqual(await client.readUntilClosed(), [
      { status: STATUS_FOUND, text: "Ada Lovelace" },
      { status: STATUS_NOT_FOUND, text: "nobody" },
    ]);
    assert.equal(client.ending, "eof");
  });
});

Deno.test("WireClient takes a reset as the end by default, and says it was one", async () => {
  await using reset = await resetConnection((port) => WireClient.connect(port));
  const { client } = reset;
  assert.deepEqual(await client.readUntilClosed(), []);
  assert.equal(client.ending, "reset");
});

Deno.test('WireClient with resets: "throw" rejects the read with the reset', async () => {
  await using reset = await resetConnection((port) =>
    WireClient.connect(port, { resets: "throw" })
  );
  const { client } = reset;
  await assert.rejects(client.readReply(), Deno.errors.ConnectionReset);
  assert.equal(client.ending, "reset");
});

Deno.test("WireClient fails when the connection ends inside a reply frame", async () => {
  await using server = serveOne(async (conn) => {
    await writeAll(conn, encodeReply(STATUS_FOUND, "Ada Lovelace").subarray(0, 7));
  });
  await withWireClient(server.port, async (client) => {
    await assert.rejects(client.readReply(), /ended inside a reply frame/);
  });
});

Deno.test("WireClient.connectFrom connects from the source address it is given", async () => {
  let peer = "";
  await using server = serveOne(async (conn) => {
    peer = conn.remoteAddr.hostname;
    await writeAll(conn, encodeReply(STATUS_FOUND, "Ada Lovelace"));
  });
  await withWireClientFrom(server.port, "127.0.0.2", async (client) => {
    assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: "Ada Lovelace" });
    assert.equal(await client.readReply(), null);
    assert.equal(client.ending, "eof");
  });
  assert.equal(peer, "127.0.0.2");
});

Deno.test("WireClient.connectFrom learns of a reset by its event, before any read", async () => {
  await using reset = await resetConnection((port) => WireClient.connectFrom(port, "127.0.0.3"));
  const { client } = reset;
  // No read: the socket's events alone tell the client how the connection ended.
  await waitFor(() => client.ending !== undefined, "the client to see the end");
  assert.equal(client.ending, "reset");
});
