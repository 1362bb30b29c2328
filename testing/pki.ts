/**
 * A throwaway public-key infrastructure for the TLS tests, the client's
 * certificate tests and the TLS benchmarks, made with the `openssl` command
 * at run time: a CA, two server certificates it signed (the second for
 * rotation), a client certificate, and a rogue CA with a client certificate
 * of its own, so that a test can show a certificate from the wrong issuer
 * being refused.
 *
 * Keys are P-256 (fast to make and to handshake with) unless RSA is asked
 * for; certificates live two days. Nothing here is secret: the directory is removed on disposal.
 *
 * ```ts
 * import { makeTestPki } from "./pki.ts";
 *
 * await using pki = await makeTestPki();
 * console.log(pki.server.certificatePath, pki.ca.certificate);
 * ```
 *
 * @module
 */

/** A certificate and its private key, as PEM text and as files. */
export interface PemPair {
  /** The certificate, PEM. */
  certificate: string;
  /** Its private key, PEM (unencrypted). */
  key: string;
  /** Where the certificate is written. */
  certificatePath: string;
  /** Where the key is written. */
  keyPath: string;
}

/** The certificates of one test run; disposal removes their directory. */
export interface TestPki extends AsyncDisposable {
  /** The directory holding every file. */
  dir: string;
  /** The CA that signed the server and client certificates. */
  ca: PemPair;
  /** The server certificate: subjectAltName IP:127.0.0.1 and DNS:localhost. */
  server: PemPair;
  /** A second server certificate from the same CA, for rotation. */
  rotatedServer: PemPair;
  /** A client certificate from {@linkcode TestPki.ca}, subject {@linkcode CLIENT_SUBJECT}. */
  client: PemPair;
  /** A CA nobody trusts. */
  rogueCa: PemPair;
  /** A client certificate from the rogue CA. */
  rogueClient: PemPair;
}

/** The server certificate's common name. */
export const SERVER_NAME = "addrbook test server";
/** The rotated server certificate's common name. */
export const ROTATED_SERVER_NAME = "addrbook rotated server";
/** The client certificate's subject, in RFC 2253 form (most specific part first). */
export const CLIENT_SUBJECT = "CN=client one,O=addrbook test";

/** The kinds of key the certificates can have. */
export type KeyAlgorithm = "ec-p256" | "rsa-2048";

const NEW_KEY: Record<KeyAlgorithm, readonly string[]> = {
  "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
  // What Redis's and the project's TLS benchmarks use: a handshake costs an RSA signature.
  "rsa-2048": ["-newkey", "rsa:2048", "-nodes"],
};
const VALID_DAYS = "2";
const SERVER_EXTENSIONS = [
  "subjectAltName=IP:127.0.0.1,DNS:localhost",
  "basicConstraints=CA:FALSE",
  "keyUsage=digitalSignature",
  "extendedKeyUsage=serverAuth",
].join("\n");
const CLIENT_EXTENSIONS = [
  "basicConstraints=CA:FALSE",
  "keyUsage=digitalSignature",
  "extendedKeyUsage=clientAuth",
].join("\n");

/**
 * Runs `openssl` in `cwd`.
 *
 * @throws {Error} saying how to install it when the command is missing, or with its stderr when it fails.
 */
export async function runOpenssl(cwd: string, args: readonly string[]): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args: [...args],
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "The TLS tests need the openssl command on PATH and it was not found (apt-get install openssl).",
      );
    }
    throw error;
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(
      `The command openssl ${args.join(" ")} failed with exit ${output.code}: ${stderr}`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

/** Makes every certificate of {@linkcode TestPki} in a new temp directory, with P-256 keys unless told. */
export async function makeTestPki(algorithm: KeyAlgorithm = "ec-p256"): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "addrbook_test_pki_" });
  const makeCa = (name: string, subject: string) => makeCaPair(dir, name, subject, algorithm);
  const makeLeaf = (name: string, subject: string, issuer: string, extensions: string) =>
    makeLeafPair(dir, name, subject, issuer, extensions, algorithm);
  try {
    const ca = await makeCa("ca", "/CN=addrbook test CA");
    const rogueCa = await makeCa("rogue-ca", "/CN=addrbook rogue CA");
    return {
      dir,
      ca,
      rogueCa,
      server: await makeLeaf("server", `/CN=${SERVER_NAME}`, "ca", SERVER_EXTENSIONS),
      rotatedServer: await makeLeaf(
        "rotated-server",
        `/CN=${ROTATED_SERVER_NAME}`,
        "ca",
        SERVER_EXTENSIONS,
      ),
      client: await makeLeaf("client", "/O=addrbook test/CN=client one", "ca", CLIENT_EXTENSIONS),
      rogueClient: await makeLeaf(
        "rogue-client",
        "/O=addrbook test/CN=client one",
        "rogue-ca",
        CLIENT_EXTENSIONS,
      ),
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

async function makeCaPair(
  dir: string,
  name: string,
  subject: string,
  algorithm: KeyAlgorithm,
): Promise<PemPair> {
  await runOpenssl(dir, [
    "req",
    "-x509",
    ...NEW_KEY[algorithm],
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    VALID_DAYS,
    "-subj",
    subject,
  ]);
  return await readPair(dir, name);
}

/**
 * Makes a client certificate from `pki`'s CA as `openssl x509 -req` does
 * without `-extfile`: X.509 version 1, which TLS libraries refuse as a
 * client certificate. For the tests of what the client says about one.
 */
export async function makeVersion1Client(pki: TestPki): Promise<PemPair> {
  return await makeLeafPair(pki.dir, "v1-client", "/CN=version one", "ca", undefined, "ec-p256");
}

async function makeLeafPair(
  dir: string,
  name: string,
  subject: string,
  issuer: string,
  extensions: string | undefined,
  algorithm: KeyAlgorithm,
): Promise<PemPair> {
  await runOpenssl(dir, [
    "req",
    ...NEW_KEY[algorithm],
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ]);
  // No extensions file makes a version 1 certificate.
  const extfile = extensions === undefined ? [] : ["-extfile", `${name}.ext`];
  if (extensions !== undefined) await Deno.writeTextFile(`${dir}/${name}.ext`, extensions);
  await runOpenssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${issuer}.crt`,
    "-CAkey",
    `${issuer}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    VALID_DAYS,
    ...extfile,
  ]);
  return await readPair(dir, name);
}

async function readPair(dir: string, name: string): Promise<PemPair> {
  const certificatePath = `${dir}/${name}.crt`;
  const keyPath = `${dir}/${name}.key`;
  return {
    certificatePath,
    keyPath,
    certificate: await Deno.readTextFile(certificatePath),
    key: await Deno.readTextFile(keyPath),
  };
}
