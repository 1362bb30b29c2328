import assert from "node:assert/strict";
import { EXIT_FAILURE, StartError } from "./server_error.ts";
import { checkListenAddress, listen } from "./server_listen.ts";
import { LOOPBACK } from "./test_util.ts";

/** A port some other socket holds for the length of `body`. */
async function withBusyPort(body: (port: number) => Promise<void> | void): Promise<void> {
  const taken = Deno.listen({ hostname: LOOPBACK, port: 0 });
  try {
    await body((taken.addr as Deno.NetAddr).port);
  } finally {
    taken.close();
  }
}

function assertStartError(run: () => unknown, message: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof StartError);
    assert.equal(error.message, message);
    assert.equal(error.exitCode, EXIT_FAILURE);
    return true;
  });
}

Deno.test("listen binds a free port and the listener accepts", async () => {
  const listener = listen(LOOPBACK, 0, "alone", undefined);
  try {
    const { port } = listener.addr as Deno.NetAddr;
    assert.ok(port > 0);
    const [accepted, client] = await Promise.all([
      listener.accept(),
      Deno.connect({ hostname: LOOPBACK, port }),
    ]);
    accepted.close();
    client.close();
  } finally {
    listener.close();
  }
});

Deno.test("listen refuses a port in use alone and as the first of several threads", async () => {
  await withBusyPort((port) => {
    for (const sharing of ["alone", "first"] as const) {
      assertStartError(
        () => listen(LOOPBACK, port, sharing, undefined),
        `Cannot listen on 127.0.0.1:${port}: the port is already in use.`,
      );
    }
  });
});

Deno.test("listen lets later threads join the first on its port", () => {
  const first = listen(LOOPBACK, 0, "first", undefined);
  try {
    const { port } = first.addr as Deno.NetAddr;
    const second = listen(LOOPBACK, port, "join", undefined);
    assert.equal((second.addr as Deno.NetAddr).port, port);
    second.close();
  } finally {
    first.close();
  }
});

Deno.test("listen says when the address is not this machine's, bracketing IPv6", () => {
  // 192.0.2.0/24 and 2001:db8::/32 are reserved for documentation: no machine has them.
  assertStartError(
    () => listen("192.0.2.1", 8080, "alone", undefined),
    "Cannot listen on 192.0.2.1:8080: no such address on this machine.",
  );
  assertStartError(
    () => listen("2001:db8::1", 8080, "alone", undefined),
    "Cannot listen on [2001:db8::1]:8080: no such address on this machine.",
  );
});

Deno.test("listen refuses TLS files that are not a certificate and a key", () => {
  assert.throws(
    () => listen(LOOPBACK, 0, "alone", { cert: "not a certificate", key: "not a key" }),
    (error: unknown) => {
      assert.ok(error instanceof StartError);
      assert.match(error.message, /^Cannot use the TLS certificate or key: /);
      return true;
    },
  );
});

Deno.test("checkListenAddress passes a free address and lets it go, and refuses a busy one", async () => {
  const free = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  checkListenAddress(LOOPBACK, port, undefined);
  // Let go: the port can be bound again at once.
  Deno.listen({ hostname: LOOPBACK, port }).close();
  await withBusyPort((busy) => {
    assertStartError(
      () => checkListenAddress(LOOPBACK, busy, undefined),
      `Cannot listen on 127.0.0.1:${busy}: the port is already in use.`,
    );
  });
});
