/**
 * A TLS server context: OpenSSL's `SSL_CTX`, the object that holds what
 * every connection of one listener shares (the certificate chain, the
 * private key, the protocol versions and ciphers allowed, and whom to trust
 * for client certificates), built from PEM text.
 *
 * The rules, as in Redis's `tls.c`:
 * - TLS 1.2 at least; OpenSSL's default cipher list at security level 2
 *   (RSA keys of 2048 bits or more, no SHA-1 signatures).
 * - Renegotiation refused: a client could otherwise make the server redo
 *   the expensive part of a handshake as often as it liked.
 * - Read-ahead: OpenSSL reads all the socket holds at once, not a record
 *   header and then its body (see transport/tls_connection.ts).
 * - Partial writes (`SSL_write` may take part of a buffer, like write(2))
 *   and moving write buffers (a retry may pass the same bytes from another
 *   address), so the event loop can treat TLS like a socket.
 * - With a client CA: the client must present a certificate
 *   (`SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT`) that chains to
 *   that CA, the only trust anchor (the context never loads the system's
 *   CAs); the CA's name is also sent to the client as the acceptable issuer.
 *
 * Ownership: a {@linkcode TlsContext} owns one reference to its `SSL_CTX`;
 * every connection made from it takes another (OpenSSL counts them). So
 * rotating certificates is building a new context and freeing the old one:
 * connections made with the old one keep it alive until they end, and new
 * connections get the new certificate.
 *
 * ```ts ignore
 * import { openOpenSsl } from "./openssl.ts";
 * import { TlsContext } from "./tls_context.ts";
 *
 * const openssl = openOpenSsl()!;
 * let context = TlsContext.create(openssl, { cert, key, clientCa });
 * // On SIGHUP: build the new one first, so a broken file keeps the old one serving.
 * const next = TlsContext.create(openssl, { cert: newCert, key: newKey });
 * context.free();
 * context = next;
 * ```
 *
 * @module
 */

import {
  ERR_LIB_PEM,
  ERR_LIB_X509,
  errorLibrary,
  errorReason,
  type OpenSsl,
  PEM_R_NO_START_LINE,
  SSL_CTRL_CHAIN_CERT,
  SSL_CTRL_MODE,
  SSL_CTRL_SET_MIN_PROTO_VERSION,
  SSL_CTRL_SET_READ_AHEAD,
  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
  SSL_MODE_ENABLE_PARTIAL_WRITE,
  SSL_OP_IGNORE_UNEXPECTED_EOF,
  SSL_OP_NO_RENEGOTIATION,
  SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
  SSL_VERIFY_PEER,
  TLS1_2_VERSION,
  X509_R_KEY_TYPE_MISMATCH,
  X509_R_KEY_VALUES_MISMATCH,
} from "./openssl.ts";

/** OpenSSL's security level 2: 112-bit security (RSA 2048, P-256), no SHA-1. */
export const SECURITY_LEVEL = 2;

/**
 * Tells OpenSSL which cached sessions are ours; without it a client that
 * resumes a session on a context that verifies clients is refused.
 */
const SESSION_ID_CONTEXT = new TextEncoder().encode("addrbook");

/** An empty password: an encrypted key then fails to load instead of prompting on the terminal. */
const NO_PASSWORD = new Uint8Array(1);

/**
 * The server's TLS inputs, PEM text: what a context is built from, here
 * and in node:tls (transport/node_tls_listener.ts), read from `--tls-cert`,
 * `--tls-key` and `--tls-client-ca` (server/tls_files.ts) and handed to
 * every serving thread. The one type for the triple, everywhere.
 */
export interface TlsFiles {
  /** The server's certificate, then the intermediate certificates that chain it to a root. */
  cert: string;
  /** The server's private key, unencrypted. */
  key: string;
  /** When given: the CA a client certificate must be signed by, and its only trust anchor. */
  clientCa?: string;
}

/** Which input of {@linkcode TlsFiles} was wrong. */
export type TlsInputRole = "certificate" | "key" | "client CA";

/** A certificate, key or client CA that OpenSSL or node:tls refused; the message names which and why. */
export class TlsContextError extends Error {
  /** The input that was wrong. */
  readonly role: TlsInputRole;

  /** Creates the error for `role`, with a one-sentence message. */
  constructor(role: TlsInputRole, message: string) {
    super(message);
    this.name = "TlsContextError";
    this.role = role;
  }
}

/** A server-side TLS context (`SSL_CTX`), ready to make connections. */
export class TlsContext {
  #pointer: Deno.PointerObject | null;
  /** Whether clients must present a certificate signed by the client CA. */
  readonly verifiesClients: boolean;
  readonly #openssl: OpenSsl;

  private constructor(openssl: OpenSsl, pointer: Deno.PointerObject, verifiesClients: boolean) {
    this.#openssl = openssl;
    this.#pointer = pointer;
    this.verifiesClients = verifiesClients;
  }

  /**
   * Builds a context from PEM text.
   *
   * @throws {TlsContextError} when the certificate, the key or the client CA
   * is not usable (not PEM, refused at security level 2, key and certificate
   * not a pair), naming which and OpenSSL's reason.
   */
  static create(openssl: OpenSsl, files: TlsFiles): TlsContext {
    const { ssl } = openssl;
    openssl.crypto.ERR_clear_error();
    const context = ssl.SSL_CTX_new(ssl.TLS_server_method());
    if (context === null) {
      throw new Error(`OpenSSL could not make a context: ${errorText(openssl)}.`);
    }
    try {
      configure(openssl, context);
      useCertificateChain(openssl, context, files.cert);
      usePrivateKey(openssl, context, files.key);
      if (files.clientCa !== undefined) trustClientCa(openssl, context, files.clientCa);
    } catch (error) {
      ssl.SSL_CTX_free(context);
      throw error;
    }
    return new TlsContext(openssl, context, files.clientCa !== undefined);
  }

  /**
   * The `SSL_CTX*`, for `SSL_new`.
   *
   * @throws {TypeError} once the context is freed.
   */
  get pointer(): Deno.PointerObject {
    if (this.#pointer === null) throw new TypeError("The TLS context was used after free().");
    return this.#pointer;
  }

  /**
   * Drops this owner's reference. Connections made from the context keep
   * working: OpenSSL frees it when the last of them is freed. Calling it
   * again does nothing.
   */
  free(): void {
    if (this.#pointer === null) return;
    this.#openssl.ssl.SSL_CTX_free(this.#pointer);
    this.#pointer = null;
  }

  /** Same as {@linkcode free}, for `using`. */
  [Symbol.dispose](): void {
    this.free();
  }
}

function configure(openssl: OpenSsl, context: Deno.PointerObject): void {
  const { ssl } = openssl;
  if (
    ssl.SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, BigInt(TLS1_2_VERSION), null) !== 1n
  ) {
    throw new Error(`OpenSSL refused TLS 1.2 as the lowest version: ${errorText(openssl)}.`);
  }
  ssl.SSL_CTX_ctrl(
    context,
    SSL_CTRL_MODE,
    BigInt(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
    null,
  );
  // One read(2) per readiness event instead of one per record header and one per body.
  ssl.SSL_CTX_ctrl(context, SSL_CTRL_SET_READ_AHEAD, 1n, null);
  // A peer that closes TCP without close_notify ends its stream: after the
  // handshake the protocol's own frames say whether anything was cut short.
  ssl.SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  ssl.SSL_CTX_set_security_level(context, SECURITY_LEVEL);
  ssl.SSL_CTX_set_session_id_context(context, SESSION_ID_CONTEXT, SESSION_ID_CONTEXT.length);
}

function useCertificateChain(openssl: OpenSsl, context: Deno.PointerObject, pem: string): void {
  const { ssl, crypto } = openssl;
  const certificates = readCertificates(openssl, pem, "certificate");
  try {
    if (ssl.SSL_CTX_use_certificate(context, certificates[0]) !== 1) {
      throw new TlsContextError(
        "certificate",
        `The certificate was refused: ${errorText(openssl)}.`,
      );
    }
    for (const intermediate of certificates.slice(1)) {
      // add1: the context takes its own reference; ours is freed below.
      if (ssl.SSL_CTX_ctrl(context, SSL_CTRL_CHAIN_CERT, 1n, intermediate) !== 1n) {
        throw new TlsContextError(
          "certificate",
          `An intermediate certificate of the chain was refused: ${errorText(openssl)}.`,
        );
      }
    }
  } finally {
    for (const certificate of certificates) crypto.X509_free(certificate);
  }
}

function usePrivateKey(openssl: OpenSsl, context: Deno.PointerObject, pem: string): void {
  const { ssl, crypto } = openssl;
  const key = withMemoryBio(
    openssl,
    pem,
    (bio) => crypto.PEM_read_bio_PrivateKey(bio, null, null, NO_PASSWORD),
  );
  if (key === null) {
    throw new TlsContextError("key", `The key is not a PEM private key: ${errorText(openssl)}.`);
  }
  try {
    // SSL_CTX_use_PrivateKey already compares the key with the certificate;
    // SSL_CTX_check_private_key is the documented check, kept for any key type it skips.
    if (ssl.SSL_CTX_use_PrivateKey(context, key) !== 1) throw keyRefused(openssl);
  } finally {
    crypto.EVP_PKEY_free(key);
  }
  if (ssl.SSL_CTX_check_private_key(context) !== 1) throw keyRefused(openssl);
}

function keyRefused(openssl: OpenSsl): TlsContextError {
  const error = openssl.takeError();
  const text = error?.text ?? "no reason given";
  const mismatch = error !== undefined && errorLibrary(error.code) === ERR_LIB_X509 &&
    [X509_R_KEY_TYPE_MISMATCH, X509_R_KEY_VALUES_MISMATCH].includes(errorReason(error.code));
  return new TlsContextError(
    "key",
    mismatch || error === undefined
      ? `The key does not match the certificate: ${text}.`
      : `The key was refused: ${text}.`,
  );
}

function trustClientCa(openssl: OpenSsl, context: Deno.PointerObject, pem: string): void {
  const { ssl, crypto } = openssl;
  const certificates = readCertificates(openssl, pem, "client CA");
  const store = ssl.SSL_CTX_get_cert_store(context);
  try {
    for (const certificate of certificates) {
      // Both take their own copy or reference; ours is freed below.
      if (
        crypto.X509_STORE_add_cert(store, certificate) !== 1 ||
        ssl.SSL_CTX_add_client_CA(context, certificate) !== 1
      ) {
        throw new TlsContextError(
          "client CA",
          `The client CA was refused: ${errorText(openssl)}.`,
        );
      }
    }
  } finally {
    for (const certificate of certificates) crypto.X509_free(certificate);
  }
  ssl.SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, null);
}

/**
 * Every certificate in `pem`, in order (at least one); the caller frees them.
 *
 * @throws {TlsContextError} when there is none or one is broken.
 */
function readCertificates(
  openssl: OpenSsl,
  pem: string,
  role: TlsInputRole,
): Deno.PointerObject[] {
  const { crypto } = openssl;
  const certificates: Deno.PointerObject[] = [];
  const failure = withMemoryBio(openssl, pem, (bio) => {
    // Bounded: a PEM text of n bytes holds fewer than n certificates.
    for (let i = 0; i <= pem.length; i++) {
      const certificate = crypto.PEM_read_bio_X509(bio, null, null, null);
      if (certificate === null) break;
      certificates.push(certificate);
    }
    const error = openssl.takeError();
    const ended = error !== undefined && errorLibrary(error.code) === ERR_LIB_PEM &&
      errorReason(error.code) === PEM_R_NO_START_LINE;
    // "No start line" after the last certificate is the normal end of the text.
    return ended && certificates.length > 0 ? undefined : (error?.text ?? "no certificate");
  });
  if (failure !== undefined) {
    for (const certificate of certificates) crypto.X509_free(certificate);
    const what = role === "certificate" ? "The certificate" : "The client CA";
    const problem = certificates.length === 0
      ? "is not a PEM certificate"
      : `holds a broken certificate after the first ${certificates.length}`;
    throw new TlsContextError(role, `${what} ${problem}: ${failure}.`);
  }
  return certificates;
}

/** Runs `use` with a memory BIO holding a copy of `text`, and frees the BIO. */
function withMemoryBio<T>(openssl: OpenSsl, text: string, use: (bio: Deno.PointerObject) => T): T {
  const { crypto } = openssl;
  const bio = crypto.BIO_new(crypto.BIO_s_mem());
  if (bio === null) throw new Error(`OpenSSL could not make a memory BIO: ${errorText(openssl)}.`);
  try {
    const bytes = new TextEncoder().encode(text);
    // BIO_write copies, so the bytes need not outlive this call.
    if (bytes.length > 0 && crypto.BIO_write(bio, bytes, bytes.length) !== bytes.length) {
      throw new Error(`OpenSSL could not buffer the PEM text: ${errorText(openssl)}.`);
    }
    return use(bio);
  } finally {
    crypto.BIO_free(bio);
  }
}

/** The oldest queued OpenSSL error as text (the queue is emptied), or a fallback. */
function errorText(openssl: OpenSsl): string {
  return openssl.takeError()?.text ?? "no reason given";
}
