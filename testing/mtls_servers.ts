/**
 * Servers that require a client certificate from a {@linkcode TestPki}'s
 * CA, for the client's mutual-TLS tests: one that answers the protocol
 * with the certificate's common name, and `openssl s_server`, which
 * refuses a certificate the way OpenSSL-based servers do.
 *
 * ```ts ignore
 * import { CertificateServer } from "./mtls_servers.ts";
 * import { makeTestPki } from "./pki.ts";
 *
 * await using pki = await makeTestPki();
 * await using server = await CertificateServer.start(pki);
 * // a client presenting pki.client is answered FOUND "client one"; others fail their handshake
 * ```
 *
 * @module
 */

import tls from "node:tls";
import { encodeReply, FrameDecoder, MAX_QUERY_BYTES, TYPE_QUERY } from "../protocol.ts";
import { concat } from "./frames.ts";
import { freePort, LOOPBACK } from "./loopback.ts";
import type { TestPki } from "./pki.ts";
import { LineCollector } from "./processes.ts";

/**
 * A `node:tls` server on {@linkcode LOOPBACK} that requires a client
 * certificate from `pki`'s CA (the handshake of any other client fails)
 * and answers the protocol: FOUND with the certificate's common name for
 * every query.
 */
export class CertificateServer implements AsyncDisposable {
  /** The port it listens on. */
  port = 0;
  /** Handshakes it refused. */
  refused = 0;
  readonly #server: tls.Server;
  readonly #sockets = new Set<tls.TLSSocket>();

  private constructor(pki: TestPki) {
    this.#server = tls.createServer({
      key: pki.server.key,
      cert: pki.server.certificate,
      ca: pki.ca.certificate,
      requestCert: true,
      rejectUnauthorized: true,
    }, (socket) => this.#serve(socket));
    this.#server.on("tlsClientError", () => this.refused++);
  }

  /** Starts the server and waits until it listens. */
  static async start(pki: TestPki): Promise<CertificateServer> {
    const server = new CertificateServer(pki);
    await new Promise<void>((resolve) => server.#server.listen(0, LOOPBACK, resolve));
    server.port = (server.#server.address() as { port: number }).port;
    return server;
  }

  /** Stops listening and ends every connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const subject = socket.getPeerCertificate().subject as unknown as { CN?: string };
    const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
    socket.on("data", (chunk: Uint8Array) => {
      decoder.push(new Uint8Array(chunk));
      const replies: Uint8Array[] = [];
      while (decoder.next() !== null) replies.push(encodeReply(0, subject.CN ?? "?"));
      socket.write(concat(replies));
    });
  }
}

/**
 * `openssl s_server` on {@linkcode LOOPBACK}, requiring a client certificate
 * from `pki`'s CA and refusing any other with a TLS alert, as OpenSSL-based
 * servers do. It speaks no addrbook protocol: it is for refusals.
 */
export async function startOpensslServer(
  pki: TestPki,
): Promise<AsyncDisposable & { port: number }> {
  const port = freePort();
  const child = new Deno.Command("openssl", {
    args: [
      "s_server",
      "-accept",
      `${LOOPBACK}:${port}`,
      "-cert",
      pki.server.certificatePath,
      "-key",
      pki.server.keyPath,
      "-CAfile",
      pki.ca.certificatePath,
      "-Verify",
      "1",
      "-verify_return_error",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdout = new LineCollector(child.stdout);
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await child.status;
    await stdout.done;
    await child.stdin.close().catch(() => {});
  };
  try {
    await stdout.waitFor(/^ACCEPT/);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, [Symbol.asyncDispose]: stop };
}
