/**
 * The parts of the system's OpenSSL 3 (`libssl.so.3` and `libcrypto.so.3`)
 * that a TLS server needs, reached through Deno's foreign function
 * interface, as common/libc.ts does for the socket calls.
 *
 * Why: Deno's own TLS (`Deno.listenTls`) lives behind promises, cannot ask
 * for client certificates and cannot set `TCP_NODELAY`. Redis, HAProxy and
 * nginx all drive OpenSSL themselves from their event loop; doing the same
 * lets the epoll loop serve TLS without leaving its thread.
 *
 * This module only declares the C functions, the constants from the C
 * headers, and the small helpers every caller needs (reading OpenSSL's
 * per-thread error queue, C strings). transport/tls_context.ts builds server contexts
 * with it, transport/tls_connection.ts drives one connection.
 *
 * A note on types, for readers new to FFI: an OpenSSL object (`SSL_CTX*`,
 * `SSL*`, `X509*`) is an opaque pointer here; C `int` is `i32` and C `long`
 * and `unsigned long` are 64 bits on 64-bit Linux. The calls made for every
 * read and write take and return only pointers and `i32`, which keeps them
 * on Deno's fast FFI path (no BigInt per call).
 *
 * Needs `--allow-ffi` and Linux with OpenSSL 3; {@linkcode openOpenSsl}
 * returns `undefined` anywhere else.
 *
 * @module
 */

/** The libssl functions used, with their C signatures in Deno's FFI terms. */
export const SSL_SYMBOLS = {
  TLS_server_method: { parameters: [], result: "pointer" },
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  SSL_CTX_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  SSL_CTX_set_options: { parameters: ["pointer", "u64"], result: "u64" },
  SSL_CTX_set_security_level: { parameters: ["pointer", "i32"], result: "void" },
  SSL_CTX_use_certificate: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_use_PrivateKey: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_set_verify: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  SSL_CTX_get_cert_store: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_add_client_CA: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_set_session_id_context: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  SSL_free: { parameters: ["pointer"], result: "void" },
  SSL_set_fd: { parameters: ["pointer", "i32"], result: "i32" },
  SSL_set_accept_state: { parameters: ["pointer"], result: "void" },
  SSL_do_handshake: { parameters: ["pointer"], result: "i32" },
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_pending: { parameters: ["pointer"], result: "i32" },
  SSL_has_pending: { parameters: ["pointer"], result: "i32" },
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  SSL_get1_peer_certificate: { parameters: ["pointer"], result: "pointer" },
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  SSL_get_version: { parameters: ["pointer"], result: "pointer" },
} as const;

/** The libcrypto functions used. */
export const CRYPTO_SYMBOLS = {
  ERR_get_error: { parameters: [], result: "u64" },
  ERR_clear_error: { parameters: [], result: "void" },
  ERR_error_string_n: { parameters: ["u64", "buffer", "usize"], result: "void" },
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
  BIO_s_mem: { parameters: [], result: "pointer" },
  BIO_new: { parameters: ["pointer"], result: "pointer" },
  BIO_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  PEM_read_bio_X509: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  PEM_read_bio_PrivateKey: {
    parameters: ["pointer", "pointer", "pointer", "buffer"],
    result: "pointer",
  },
  X509_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  X509_STORE_add_cert: { parameters: ["pointer", "pointer"], result: "i32" },
  X509_get_subject_name: { parameters: ["pointer"], result: "pointer" },
  X509_NAME_print_ex: { parameters: ["pointer", "pointer", "i32", "u64"], result: "i32" },
} as const;

/** The bound libssl functions. */
export type SslSymbols = Deno.DynamicLibrary<typeof SSL_SYMBOLS>["symbols"];
/** The bound libcrypto functions. */
export type CryptoSymbols = Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"];

// SSL_get_error results (ssl.h).
/** The call succeeded. */
export const SSL_ERROR_NONE = 0;
/** A protocol or library failure; the error queue says which. The connection is unusable. */
export const SSL_ERROR_SSL = 1;
/** Call again once the socket is readable. */
export const SSL_ERROR_WANT_READ = 2;
/** Call again once the socket is writable. */
export const SSL_ERROR_WANT_WRITE = 3;
/** A system call failed (errno) or the peer closed the socket without a close_notify. */
export const SSL_ERROR_SYSCALL = 5;
/** The peer sent close_notify: the end of its data. */
export const SSL_ERROR_ZERO_RETURN = 6;

// SSL_CTX_set_verify modes (ssl.h).
/** Do not ask the client for a certificate. */
export const SSL_VERIFY_NONE = 0x00;
/** Ask the client for a certificate and verify the one it sends. */
export const SSL_VERIFY_PEER = 0x01;
/** With SSL_VERIFY_PEER: fail the handshake when the client sends none. */
export const SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02;

// Protocol versions (prov_ssl.h).
/** TLS 1.2, the oldest version served. */
export const TLS1_2_VERSION = 0x0303;
/** TLS 1.3. */
export const TLS1_3_VERSION = 0x0304;

// SSL_CTX_ctrl commands: the C macros SSL_CTX_set_mode and friends expand to these (ssl.h).
/** SSL_CTX_ctrl: add mode bits (SSL_CTX_set_mode). */
export const SSL_CTRL_MODE = 33;
/** SSL_CTX_ctrl: the lowest protocol version (SSL_CTX_set_min_proto_version). */
export const SSL_CTRL_SET_MIN_PROTO_VERSION = 123;
/** SSL_CTX_ctrl: read as much as the socket holds, not one record at a time (SSL_CTX_set_read_ahead). */
export const SSL_CTRL_SET_READ_AHEAD = 41;
/** SSL_CTX_ctrl: add a chain certificate (SSL_CTX_add0/add1_chain_cert; larg 1 = add1). */
export const SSL_CTRL_CHAIN_CERT = 89;

/** Mode: SSL_write may return after writing part of the buffer, like write(2). */
export const SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1;
/** Mode: a retried SSL_write may pass the same bytes at another address. */
export const SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 0x2;

// SSL_CTX_set_options bits (ssl.h), 64-bit.
/** Option: refuse renegotiation (a client could make the server redo handshakes at will). */
export const SSL_OP_NO_RENEGOTIATION: bigint = 1n << 30n;
/** Option: a peer closing TCP without close_notify reads as a clean end, not an error. */
export const SSL_OP_IGNORE_UNEXPECTED_EOF: bigint = 1n << 7n;

// Error queue codes (err.h): since OpenSSL 3, library in bits 23..30, reason in 0..22.
/** The library number of libssl's errors. */
export const ERR_LIB_SSL = 20;
/** The library number of PEM decoding errors. */
export const ERR_LIB_PEM = 9;
/** The library number errno codes are reported under. */
const ERR_LIB_SYS = 2;
const ERR_LIB_OFFSET = 23;
const ERR_LIB_MASK = 0xff;
const ERR_REASON_MASK = 0x7fffff;
/** Bit 31: the code is an errno, not a library error. */
const ERR_SYSTEM_FLAG = 0x80000000;
/** The library number of certificate (X509) errors. */
export const ERR_LIB_X509 = 11;
/** X509 reason: the key is of another type than the certificate's (RSA against EC). */
export const X509_R_KEY_TYPE_MISMATCH = 115;
/** X509 reason: the key is not the certificate's. */
export const X509_R_KEY_VALUES_MISMATCH = 116;
/** PEM reason: no more PEM blocks (the normal end of reading a chain). */
export const PEM_R_NO_START_LINE = 108;
/** SSL reason: the client sent no certificate though one is required. */
export const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE = 199;
/** SSL reason: the client's certificate did not verify. */
export const SSL_R_CERTIFICATE_VERIFY_FAILED = 134;

/** SSL_get_verify_result: the certificate verified (or none was asked for). */
export const X509_V_OK = 0;

/** X509_NAME_print_ex flags for the one-line RFC 2253 form (x509.h XN_FLAG_RFC2253). */
export const XN_FLAG_RFC2253: bigint = 0x1110317n;

/** Both libraries, loaded, and the helpers built on them. */
export interface OpenSsl {
  /** libssl. */
  ssl: SslSymbols;
  /** libcrypto. */
  crypto: CryptoSymbols;
  /**
   * Empties this thread's error queue and returns the text of its oldest
   * entry (the root cause; later ones wrap it), or `undefined` when empty.
   */
  takeError(): { code: number; text: string } | undefined;
  /** The text of one error code, as `ERR_error_string_n` writes it. */
  errorText(code: number): string;
  /** The text of an `SSL_get_verify_result` code, e.g. "unable to get local issuer certificate". */
  verifyErrorText(code: number): string;
}

/**
 * Loads libssl and libcrypto when this platform and the permissions allow
 * it; returns `undefined` otherwise (no FFI permission, not Linux, no
 * OpenSSL 3), so callers can fall back to Deno's TLS.
 */
export function openOpenSsl(): OpenSsl | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  let ssl: SslSymbols;
  let crypto: CryptoSymbols;
  try {
    crypto = Deno.dlopen("libcrypto.so.3", CRYPTO_SYMBOLS).symbols;
    ssl = Deno.dlopen("libssl.so.3", SSL_SYMBOLS).symbols;
  } catch {
    return undefined; // no OpenSSL 3 on the library path
  }
  const text = new Uint8Array(256);
  const errorText = (code: number): string => {
    crypto.ERR_error_string_n(BigInt(code), text, BigInt(text.length));
    return new TextDecoder().decode(text.subarray(0, text.indexOf(0)));
  };
  return {
    ssl,
    crypto,
    errorText,
    takeError() {
      const first = Number(crypto.ERR_get_error());
      if (first === 0) return undefined;
      // Drain the rest: a stale entry would be blamed on the next call.
      for (let i = 0; i < 64; i++) {
        if (crypto.ERR_get_error() === 0n) break;
      }
      return { code: first, text: errorText(first) };
    },
    verifyErrorText(code) {
      const pointer = crypto.X509_verify_cert_error_string(BigInt(code));
      return pointer === null ? `verify error ${code}` : cString(pointer);
    },
  };
}

/** The library part of an error code, as the C macro ERR_GET_LIB. */
export function errorLibrary(code: number): number {
  return code & ERR_SYSTEM_FLAG ? ERR_LIB_SYS : (code >>> ERR_LIB_OFFSET) & ERR_LIB_MASK;
}

/** The reason part of an error code, as the C macro ERR_GET_REASON. */
export function errorReason(code: number): number {
  return code & ERR_SYSTEM_FLAG ? code & 0x7fffffff : code & ERR_REASON_MASK;
}

/** Reads a NUL-terminated C string that the library owns. */
export function cString(pointer: Deno.PointerObject): string {
  return new Deno.UnsafePointerView(pointer).getCString();
}
