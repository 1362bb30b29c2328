/**
 * Checks what the `Deno.listen` path (`--io deno`) could do for TLS with
 * `node:tls` in this Deno: does `createServer({ requestCert: true,
 * rejectUnauthorized: true, ca })` refuse a client without a certificate
 * and one from another CA, does `setNoDelay()` on its sockets take effect,
 * can the client certificate's subject be read, is `minVersion` honoured?
 * Each answer is observed with real clients on loopback, not taken from
 * the documentation.
 *
 * ```sh
 * deno run -A testing/tls_node_probe.ts
 * ```
 *
 * It prints one line per question and exits 1 if any answer is not the one
 * the server needs.
 *
 * @module
 */

import { type AddressInfo } from "node:net";
import * as tls from "node:tls";
import { describeError } from "../common/errors.ts";
import { decodeSockaddr, IPPROTO_TCP, openLibc, TCP_NODELAY } from "../common/libc.ts";
import { makeTestPki, type PemPair, type TestPki } from "./pki.ts";
import { withDeadline } from "./deadlines.ts";

const REPLY = new TextEncoder().encode("ok");
const LATENCY_CONNECTIONS = 40;
const STALL_MS = 20;
/** Descriptors 0 to 2 are stdin, stdout and stderr. */
const FIRST_FD = 3;
/** Far above what a test process holds open, and quick to walk (two calls per descriptor). */
const FD_SCAN_LIMIT = 4096;

/** What the server saw. */
interface Seen {
  secure: { authorized: boolean; subject: unknown; x509Subject: string | undefined }[];
  clientErrors: string[];
}

function startServer(
  pki: TestPki,
  options: { noDelay?: boolean; clientCertificates: boolean },
  seen: Seen,
): Promise<tls.Server> {
  const server = tls.createServer({
    key: pki.server.key,
    cert: pki.server.certificate,
    ca: [pki.ca.certificate],
    requestCert: options.clientCertificates,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  }, (socket) => {
    if (options.noDelay !== undefined) socket.setNoDelay(options.noDelay);
    seen.secure.push({
      authorized: socket.authorized,
      subject: socket.getPeerCertificate()?.subject,
      x509Subject: socket.getPeerX509Certificate?.()?.subject,
    });
    socket.on("data", () => socket.write(REPLY));
    socket.on("error", () => {});
  });
  server.on("tlsClientError", (error: Error & { code?: string }) => {
    seen.clientErrors.push(`${describeError(error)} (code ${error.code})`);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** Connects (with a client certificate when given), sends a byte, and says whether "ok" came back. */
async function answered(port: number, pki: TestPki, client?: PemPair): Promise<boolean> {
  const base = { hostname: "127.0.0.1", port, caCerts: [pki.ca.certificate] };
  try {
    const conn = await (client
      ? Deno.connectTls({ ...base, cert: client.certificate, key: client.key })
      : Deno.connectTls(base));
    try {
      await conn.write(new Uint8Array([1]));
      const buffer = new Uint8Array(16);
      const got = await withDeadline(conn.read(buffer), "a reply", 5000);
      return got !== null && got > 0;
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/**
 * Fresh connections with a TCP_NODELAY client: how many first replies took
 * over 20 ms. (`Deno.startTls`, the only Deno client whose socket can have
 * TCP_NODELAY, takes no client certificate: the server must not ask for one.)
 */
async function stalls(port: number, pki: TestPki): Promise<number> {
  let count = 0;
  for (let i = 0; i < LATENCY_CONNECTIONS; i++) {
    const started = performance.now();
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    tcp.setNoDelay(true);
    const conn = await Deno.startTls(tcp, {
      hostname: "127.0.0.1",
      caCerts: [pki.ca.certificate],
    });
    try {
      await conn.write(new Uint8Array([1]));
      await conn.read(new Uint8Array(16));
    } finally {
      conn.close();
    }
    if (performance.now() - started > STALL_MS) count++;
  }
  return count;
}

/**
 * TCP_NODELAY (0 or 1) on this process's socket from `localPort` to
 * `peerPort`: the server side of a node:tls connection, found among the
 * open descriptors by its addresses, and asked with getsockopt. Linux
 * with `--allow-ffi` only; the server must be in this process.
 */
export function noDelayOf(localPort: number, peerPort: number): number | undefined {
  const libc = openLibc();
  if (!libc) throw new Error("The TCP_NODELAY check needs --allow-ffi on Linux.");
  const { getsockopt } = Deno.dlopen("libc.so.6", {
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  }).symbols;
  const address = new Uint8Array(128);
  const length = new Uint32Array(1);
  const portOf = (call: typeof libc.calls.getsockname, fd: number) => {
    length[0] = address.length;
    return call(fd, address, new Uint8Array(length.buffer)) === 0
      ? decodeSockaddr(address).port
      : -1;
  };
  // Every descriptor number in turn (not /proc/self/fd, which Deno opens only to --allow-all):
  // getsockname fails on those that are closed or not sockets.
  for (let fd = FIRST_FD; fd < FD_SCAN_LIMIT; fd++) {
    if (portOf(libc.calls.getsockname, fd) !== localPort) continue;
    if (portOf(libc.calls.getpeername, fd) !== peerPort) continue;
    const value = new Int32Array(1);
    const size = new Uint32Array([4]);
    getsockopt(
      fd,
      IPPROTO_TCP,
      TCP_NODELAY,
      new Uint8Array(value.buffer),
      new Uint8Array(size.buffer),
    );
    return value[0];
  }
  return undefined;
}

/** Serves one connection and returns TCP_NODELAY on the server's side of it. */
async function serverSideNoDelay(port: number, pki: TestPki): Promise<number | undefined> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [pki.ca.certificate],
  });
  try {
    await conn.write(new Uint8Array([1]));
    await withDeadline(conn.read(new Uint8Array(16)), "a reply", 5000);
    return noDelayOf(port, conn.localAddr.port);
  } finally {
    conn.close();
  }
}

async function tls11Refused(port: number): Promise<boolean> {
  const { success } = await new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-tls1_1",
      "-cipher",
      "DEFAULT@SECLEVEL=0",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return !success;
}

function close(server: tls.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

async function main(): Promise<boolean> {
  await using pki = await makeTestPki();
  const results: [string, boolean, string][] = [];
  const seen: Seen = { secure: [], clientErrors: [] };
  const server = await startServer(pki, { noDelay: true, clientCertificates: true }, seen);
  const { port } = server.address() as AddressInfo;
  try {
    results.push([
      "a client with a certificate from the CA is served",
      await answered(port, pki, pki.client),
      "",
    ]);
    const subject = JSON.stringify(seen.secure[0]?.subject);
    results.push([
      "its subject is readable (getPeerCertificate().subject)",
      seen.secure[0]?.authorized === true && /client one/.test(subject),
      `${subject}; getPeerX509Certificate().subject = ${
        JSON.stringify(seen.secure[0]?.x509Subject)
      }`,
    ]);
    const before = seen.secure.length;
    const none = await answered(port, pki);
    results.push([
      "a client without a certificate is refused",
      !none && seen.secure.length === before,
      seen.clientErrors.at(-1) ?? "no tlsClientError",
    ]);
    const errorsBefore = seen.clientErrors.length;
    const rogue = await answered(port, pki, pki.rogueClient);
    results.push([
      "a client with a certificate from another CA is refused",
      !rogue && seen.secure.length === before,
      seen.clientErrors.slice(errorsBefore).join("; ") || "no tlsClientError",
    ]);
    results.push(["TLS 1.1 is refused with minVersion TLSv1.2", await tls11Refused(port), ""]);
  } finally {
    await close(server);
  }
  for (const noDelay of [true, false, undefined]) {
    const plain = await startServer(pki, { noDelay, clientCertificates: false }, {
      secure: [],
      clientErrors: [],
    });
    try {
      const plainPort = (plain.address() as AddressInfo).port;
      const option = await serverSideNoDelay(plainPort, pki);
      const count = await stalls(plainPort, pki);
      const expected = noDelay === undefined ? option : Number(noDelay);
      results.push([
        `${
          noDelay === undefined ? "setNoDelay not called" : `setNoDelay(${noDelay}) takes effect`
        }: TCP_NODELAY on the server's socket`,
        option !== undefined && option === expected,
        `${option}; first replies over ${STALL_MS} ms: ${count} of ${LATENCY_CONNECTIONS}`,
      ]);
    } finally {
      await close(plain);
    }
  }
  console.log(`node:tls in Deno ${Deno.version.deno}:`);
  for (const [question, ok, detail] of results) {
    console.log(`${ok ? "yes" : "NO "}  ${question}${detail ? `: ${detail}` : ""}`);
  }
  return results.every(([, ok]) => ok);
}

if (import.meta.main) {
  try {
    if (!(await main())) Deno.exit(1);
  } catch (error) {
    console.error(`tls_node_probe: ${describeError(error)}`);
    Deno.exit(1);
  }
}
