/**
 * Tests of one client connection: replies the real server does not send
 * yet (FORBIDDEN, RATE_LIMITED) from a scripted server on a real socket,
 * and client certificates against real TLS servers that require one
 * (`node:tls`, and `openssl s_server` for refusals with an alert).
 */

import assert from "node:assert/strict";
import { ClientError, Connection } from "./connection.ts";
import {
  type Reply,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_RATE_LIMITED,
} from "../protocol.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { CertificateServer, startOpensslServer } from "../testing/mtls_servers.ts";
import { makeTestPki, type TestPki } from "../testing/pki.ts";
import { ScriptedServer } from "../testing/scripted_server.ts";

const FORBIDDEN: Reply = {
  status: STATUS_FORBIDDEN,
  text: "Clients from 127.0.0.1 may not query: see --allow.",
};
const RATE_LIMITED: Reply = { status: STATUS_RATE_LIMITED, text: "Over 10 queries a minute." };

async function lookUpAll(connection: Connection, emails: string[]): Promise<Reply[]> {
  const replies: Reply[] = [];
  for await (const reply of connection.lookupMany(emails)) replies.push(reply);
  return replies;
}

async function assertClientError(
  promise: Promise<unknown>,
  code: ClientError["code"],
  message: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ClientError, `expected a ClientError, got ${error}`);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    return true;
  });
}

// --- FORBIDDEN and RATE_LIMITED -------------------------------------------------

Deno.test("Connection answers every query with the FORBIDDEN a server sends before it closes", async () => {
  await using server = new ScriptedServer({
    greeting: FORBIDDEN,
    answer: () => assert.fail("a forbidding server reads no query"),
  });
  const connection = await Connection.open({ hostname: LOOPBACK, port: server.port });
  try {
    assert.deepEqual(await lookUpAll(connection, ["a@example.com", "b@example.com", "c@x.org"]), [
      FORBIDDEN,
      FORBIDDEN,
      FORBIDDEN,
    ]);
    assert.deepEqual(await connection.lookup("d@example.com"), FORBIDDEN);
    assert.equal(connection.failure, undefined, "a refusal is a reply, not a failure");
  } finally {
    connection.close();
  }
  assert.equal(server.accepted, 1);
});

Deno.test("Connection reports FORBIDDEN mid-stream after the replies before it", async () => {
  await using server = new ScriptedServer({
    answer: (_email, index) =>
      index < 2 ? { status: STATUS_FOUND, text: `Person ${index}` } : {
        reply: FORBIDDEN,
        thenClose: true,
      },
  });
  const connection = await Connection.open({ hostname: LOOPBACK, port: server.port });
  try {
    const emails = Array.from({ length: 6 }, (_, i) => `p${i}@example.com`);
    const replies = await lookUpAll(connection, emails);
    assert.deepEqual(replies.map((reply) => reply.status), [
      STATUS_FOUND,
      STATUS_FOUND,
      STATUS_FORBIDDEN,
      STATUS_FORBIDDEN,
      STATUS_FORBIDDEN,
      STATUS_FORBIDDEN,
    ]);
    assert.equal(replies[1].text, "Person 1");
    assert.equal(replies[5].text, FORBIDDEN.text);
  } finally {
    connection.close();
  }
});

Deno.test("Connection reports RATE_LIMITED per query and goes on answering on the same connection", async () => {
  await using server = new ScriptedServer({
    answer: (email, index) =>
      index % 3 === 1 ? RATE_LIMITED : { status: STATUS_NOT_FOUND, text: `No ${email}.` },
  });
  const connection = await Connection.open({ hostname: LOOPBACK, port: server.port });
  try {
    const emails = Array.from({ length: 9 }, (_, i) => `p${i}@example.com`);
    const replies = await lookUpAll(connection, emails);
    assert.deepEqual(
      replies.map((reply) => reply.status),
      emails.map((_, i) => i % 3 === 1 ? STATUS_RATE_LIMITED : STATUS_NOT_FOUND),
    );
    assert.deepEqual(replies[4], RATE_LIMITED);
    assert.equal(replies[8].text, "No p8@example.com.");
    assert.equal((await connection.lookup("x@example.com")).status, STATUS_NOT_FOUND);
  } finally {
    connection.close();
  }
  assert.equal(server.accepted, 1);
});

// --- Client certificates ------------------------------------------------------

async function withPki(body: (pki: TestPki) => Promise<void>): Promise<void> {
  await using pki = await makeTestPki();
  await body(pki);
}

Deno.test("Connection presents a client certificate that a server requiring one accepts", async () => {
  await withPki(async (pki) => {
    await using server = await CertificateServer.start(pki);
    const connection = await Connection.open({ hostname: LOOPBACK, port: server.port }, {
      caCerts: [pki.ca.certificate],
      cert: pki.client.certificate,
      key: pki.client.key,
    });
    try {
      // The test server answers with the subject of the certificate it accepted.
      assert.deepEqual(await connection.lookup("ada@example.com"), {
        status: STATUS_FOUND,
        text: "client one",
      });
      assert.equal((await lookUpAll(connection, ["a@x.org", "b@x.org"])).length, 2);
    } finally {
      connection.close();
    }
    assert.equal(server.refused, 0);
  });
});

Deno.test("Connection without a certificate to a server requiring one says it requires one", async () => {
  await withPki(async (pki) => {
    await using server = await CertificateServer.start(pki);
    const connection = await Connection.open({ hostname: LOOPBACK, port: server.port }, {
      caCerts: [pki.ca.certificate],
    });
    try {
      await assertClientError(
        connection.lookup("ada@example.com"),
        "tls",
        new RegExp(
          `^The server at 127\\.0\\.0\\.1:${server.port} refused the TLS connection ` +
            `\\(.*CertificateRequired.*\\): it requires a client certificate: give --cert and --key\\.$`,
        ),
      );
    } finally {
      connection.close();
    }
  });
});

Deno.test("Connection with a certificate from another CA says the server did not accept it", async () => {
  await withPki(async (pki) => {
    await using server = await startOpensslServer(pki);
    const connection = await Connection.open({ hostname: LOOPBACK, port: server.port }, {
      caCerts: [pki.ca.certificate],
      cert: pki.rogueClient.certificate,
      key: pki.rogueClient.key,
    });
    try {
      await assertClientError(
        connection.lookup("ada@example.com"),
        "tls",
        /refused the TLS connection \(.*UnknownCA.*\): it did not accept the client certificate given by --cert\.$/,
      );
    } finally {
      connection.close();
    }
  });
});

Deno.test("Connection with a certificate a node:tls server refuses without an alert says so, as a guess", async () => {
  await withPki(async (pki) => {
    await using server = await CertificateServer.start(pki);
    const connection = await Connection.open({ hostname: LOOPBACK, port: server.port }, {
      caCerts: [pki.ca.certificate],
      cert: pki.rogueClient.certificate,
      key: pki.rogueClient.key,
    });
    try {
      await assertClientError(
        connection.lookup("ada@example.com"),
        "closed",
        /closed the connection before replying \(did it refuse the client certificate\?\)\.$/,
      );
    } finally {
      connection.close();
    }
  });
});

Deno.test("Connection.open refuses a certificate without its key, and a key without its certificate", async () => {
  await assertClientError(
    Connection.open({ hostname: LOOPBACK, port: 1 }, { cert: "x" }),
    "usage",
    /needs its key/,
  );
  await assertClientError(
    Connection.open({ hostname: LOOPBACK, port: 1 }, { key: "x" }),
    "usage",
    /needs its key, and a key its certificate/,
  );
});

Deno.test("Connection.lookupBatches yields every reply once, in order, in non-empty runs", async () => {
  await using server = new ScriptedServer({
    answer: (email) => ({ status: STATUS_FOUND, text: email.toUpperCase() }),
  });
  const connection = await Connection.open({ hostname: LOOPBACK, port: server.port });
  try {
    const emails = Array.from({ length: 3000 }, (_, i) => `p${i}@example.com`);
    const runs: Reply[][] = [];
    for await (const run of connection.lookupBatches(emails, 64)) runs.push(run);
    assert.ok(runs.every((run) => run.length > 0), "no empty run");
    assert.deepEqual(runs.flat().map((reply) => reply.text), emails.map((e) => e.toUpperCase()));
  } finally {
    connection.close();
  }
});

Deno.test("Connection.open with a certificate that is not PEM says so as a TLS error", async () => {
  await assertClientError(
    Connection.open({ hostname: LOOPBACK, port: 1 }, {
      cert: "not a certificate",
      key: "nor a key",
    }),
    "tls",
    /^Cannot connect to 127\.0\.0\.1:1: No certificates found in certificate data\.$/,
  );
});
