/**
 * The server's command line: its options, the usage text, and the checks
 * that turn flags into {@linkcode CliOptions} or refuse them with one
 * sentence (exit 2).
 *
 * ```ts
 * import { parseServerArgs } from "./cli.ts";
 * const options = parseServerArgs(["--port", "0", "--watch"]);
 * ```
 *
 * @module
 */

import { DEFAULT_LDAP_BASE, DEFAULT_LDAP_SIZE_LIMIT } from "../wire/ldap.ts";
import { InvalidDnError, parseDn } from "../wire/ldap_dn.ts";
import {
  orList,
  parseChoice,
  parseFlags,
  parsePort,
  parseSeconds,
  parseWholeNumber,
  type SecondsRange,
  UsageError,
} from "../common/cli_args.ts";
import { AccessList } from "../access/list.ts";
import type { AccessRules } from "../access/policy.ts";
import { type ClientLimitsConfig, parseAllowance } from "../access/limits.ts";
import {
  BOOK_EXTENSIONS,
  BOOK_FORMATS,
  type BookFormat,
  DUPLICATE_POLICIES,
  type DuplicatePolicy,
} from "../book/load.ts";
import type { LogFormat, LogLevel } from "../common/log.ts";
import { DEFAULT_LIMITS, type ServiceLimits } from "../session/session.ts";
import { EXIT_USAGE, StartError } from "./error.ts";
import type { IoKind, LdapListen } from "./worker_messages.ts";

/** The default book, shipped beside this module and embedded in the compiled server. */
export const DEFAULT_DATA_PATH = `${import.meta.dirname}/../data/addressbook.csv`;

/**
 * How long a watched book must stay unchanged (size, modification time and
 * inode) before it is loaded, in seconds. A deploy tool or an editor that
 * writes a large file in several steps pauses between them for far less.
 */
export const DEFAULT_WATCH_SETTLE_SECONDS = 1;

/** What the command line chose. */
export interface CliOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on; 0 for any free one. */
  port: number;
  /** The book file to read. */
  data: string;
  /** How messages name the book: as typed, or the built-in one. */
  dataLabel: string;
  /** The book format, when the extension does not tell. */
  format?: BookFormat;
  /** What to do with an email on two entries. */
  duplicates: DuplicatePolicy;
  /** Serve a book with no entries instead of refusing it. */
  allowEmpty: boolean;
  /** CSV: the email column, for other exports. */
  emailColumn?: string;
  /** CSV: the name column, for other exports. */
  nameColumn?: string;
  /** Serving threads sharing the port. */
  workers: number;
  /** The event loop for plain TCP. */
  io: "auto" | IoKind;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** Time to finish answering at shutdown. */
  shutdownTimeoutMs: number;
  /** The TLS certificate chain file, PEM. */
  tlsCert?: string;
  /** The TLS private key file, PEM. */
  tlsKey?: string;
  /** The CA file (PEM) that every client certificate must be signed by; unset: none asked for. */
  tlsClientCa?: string;
  /** Port for `/metrics`, `/healthz` and `/readyz`; off when unset. */
  metricsPort?: number;
  /** The LDAP front end's ports and directory, when `--ldap-port` or `--ldaps-port` is given. */
  ldap?: LdapListen;
  /** Log line format. */
  logFormat: LogFormat;
  /** The lowest level logged. */
  logLevel: LogLevel;
  /** Reload the book when its file changes, as on SIGHUP. */
  watch: boolean;
  /** How long a watched file must stay unchanged before it is loaded, in milliseconds. */
  watchSettleMs: number;
  /** `--allow`, `--proxy-protocol`, `--trusted-proxy`; protected mode is decided at start. */
  access: Omit<AccessRules, "protectedMode">;
  /** `--rate-limit`, `--found-limit`, `--max-connections-per-client`. */
  clientLimits: ClientLimitsConfig;
}

/** The server's usage text, for `--help` and usage errors. */
export const USAGE = `Usage: deno task server [options]

Serves an address book (email -> name) over TCP with the addrbook protocol.

Options:
  --host HOST              address to listen on, without a port (default 127.0.0.1)
  --port PORT              port to listen on, 0 for any free port (default 8080)
  --data FILE              address book to serve: ${orList(BOOK_EXTENSIONS)}
                           (default: the built-in data/addressbook.csv)
  --format FORMAT          ${orList(BOOK_FORMATS)}, when the extension does not tell
  --duplicates POLICY      an email on two entries: ${orList(DUPLICATE_POLICIES)} (default error)
  --allow-empty            serve a book with no entries (by default it is refused: at
                           start the server exits 1, on reload the old book stays)
  --email-column NAME      CSV column holding the email, for other exports
  --name-column NAME       CSV column holding the name, for other exports
  --workers N              serving threads sharing the port (default 1)
  --io LOOP                epoll (Linux), deno (Deno.listen) or auto (default: epoll
                           when it can: an IP address, --allow-ffi, and for TLS
                           OpenSSL 3)
  --max-connections N      open connections before new ones get SERVER_BUSY (default 1024)
  --idle-timeout SECONDS   close a connection silent this long, 0 = never (default 300)
  --frame-timeout SECONDS  close a connection that leaves a frame (or its PROXY
                           header, or its TLS handshake) unfinished, 0 = never
                           (default 10)
  --write-timeout SECONDS  close a connection that takes none of its waiting replies
                           for this long, 0 = never (default 30)
  --shutdown-timeout SECONDS
                           time to finish answering on SIGINT/SIGTERM (default 5)
                           Every SECONDS takes at most 3 decimals, up to 2147483.
  --allow CIDR[,CIDR...]   clients that may query (repeatable; IPv4 and IPv6; any =
                           everyone). Others get FORBIDDEN. Without it, a server listening
                           beyond loopback serves loopback clients only (protected mode)
  --rate-limit N/PERIOD    per client, at most N queries in any PERIOD (s, m, h or d, with
                           an optional count: 10s, 24h); over it: RATE_LIMITED
  --found-limit N/PERIOD   per client, at most N FOUND replies in any PERIOD; then every
                           query gets RATE_LIMITED until the period allows more
  --max-connections-per-client N
                           open connections per client; one more gets RATE_LIMITED and is
                           closed; 0 = no cap (default: a quarter of --max-connections)
  --proxy-protocol         every connection starts with a PROXY header (v1 or v2, as HAProxy
                           sends with send-proxy / send-proxy-v2): its source is the client;
                           with TLS it comes in clear before the handshake (epoll loop only)
  --trusted-proxy CIDR[,CIDR...]
                           with --proxy-protocol, the peers whose headers are believed;
                           others get FORBIDDEN (default 127.0.0.0/8,::1)
  --tls-cert FILE          serve TLS with this certificate chain (PEM); needs --tls-key
  --tls-key FILE           the private key (PEM) for --tls-cert
  --tls-client-ca FILE     with --tls-cert, require a client certificate signed by this CA
                           (PEM); its subject is the client for the per-client limits, and
                           it satisfies protected mode. SIGHUP and --watch reload the
                           certificate, key and client CA files too
  --ldap-port PORT         also serve the book over LDAPv3 on this port, for mail clients
                           (anonymous bind; search; see README "Using it from a mail client");
                           with --tls-cert it offers StartTLS, on the epoll loop only (not
                           with --io deno: Deno cannot start TLS on an accepted socket)
  --ldaps-port PORT        also serve LDAP over TLS on this port (needs --tls-cert, --tls-key;
                           then the --port port speaks TLS too)
  --ldap-base DN           the directory's suffix; entries are mail=ADDRESS,DN
                           (default ${DEFAULT_LDAP_BASE})
  --ldap-size-limit N      the most entries one LDAP search returns, paged or not; over it:
                           sizeLimitExceeded (default ${DEFAULT_LDAP_SIZE_LIMIT})
  --metrics-port PORT      serve HTTP on this port: GET /metrics (Prometheus),
                           /healthz (200 while the process runs) and /readyz (200 once
                           the book is loaded and it accepts, 503 while loading or
                           shutting down; for HAProxy's and Kubernetes' health checks)
  --log-format FORMAT      text or json (default text)
  --log-level LEVEL        debug, info, warn or error (default info)
  --watch                  reload the book when its file changes, as on SIGHUP; follows
                           symlinks (a Kubernetes ConfigMap volume too)
  --watch-settle SECONDS   with --watch, load a changed file only once it has stayed
                           unchanged this long (default ${DEFAULT_WATCH_SETTLE_SECONDS})
  --version                print the version and exit
  -h, --help               show this help

Signals: SIGHUP reloads the book; SIGINT or SIGTERM shut down gracefully (twice: at once).
Exit status: 0 after a clean shutdown, 1 when the book or the address is unusable, 2 on bad usage.`;

const FLAGS = {
  host: { type: "string" },
  port: { type: "string" },
  data: { type: "string" },
  format: { type: "string" },
  duplicates: { type: "string" },
  "allow-empty": { type: "boolean" },
  "email-column": { type: "string" },
  "name-column": { type: "string" },
  workers: { type: "string" },
  io: { type: "string" },
  "max-connections": { type: "string" },
  "idle-timeout": { type: "string" },
  "frame-timeout": { type: "string" },
  "write-timeout": { type: "string" },
  "shutdown-timeout": { type: "string" },
  allow: { type: "string", multiple: true },
  "rate-limit": { type: "string" },
  "found-limit": { type: "string" },
  "max-connections-per-client": { type: "string" },
  "proxy-protocol": { type: "boolean" },
  "trusted-proxy": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
  "metrics-port": { type: "string" },
  "ldap-port": { type: "string" },
  "ldaps-port": { type: "string" },
  "ldap-base": { type: "string" },
  "ldap-size-limit": { type: "string" },
  "log-format": { type: "string" },
  "log-level": { type: "string" },
  watch: { type: "boolean" },
  "watch-settle": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Most worker threads: past the cores of any machine this runs on, threads only cost. */
const MAX_WORKERS = 64;
/** Most connections: each holds a descriptor and buffers. */
const MAX_CONNECTIONS = 1_000_000;
/** By default one client may hold at most 1/4 of `--max-connections`. */
const CLIENT_SHARE_OF_CONNECTIONS = 4;

/**
 * Parses the server's command line.
 *
 * @throws {StartError} with exit code 2 on bad usage.
 */
export function parseServerArgs(args: string[]): CliOptions | "help" {
  try {
    return parseChecked(args);
  } catch (error) {
    if (error instanceof UsageError) throw new StartError(error.message, EXIT_USAGE);
    throw error;
  }
}

function parseChecked(args: string[]): CliOptions | "help" {
  const parsed = readFlags(args);
  if (parsed.help) return "help";
  const tlsCert = parsed["tls-cert"];
  const tlsKey = parsed["tls-key"];
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together: give both or neither.");
  }
  const tlsClientCa = parsed["tls-client-ca"];
  if (tlsClientCa !== undefined && tlsCert === undefined) {
    throw new UsageError(
      "--tls-client-ca needs --tls-cert and --tls-key: it asks TLS clients for a certificate.",
    );
  }
  const metricsPort = parsed["metrics-port"];
  return {
    hostname: checkHost(parsed.host ?? "127.0.0.1"),
    port: parsePort("--port", parsed.port ?? "8080"),
    data: checkData(parsed.data) ?? DEFAULT_DATA_PATH,
    dataLabel: parsed.data ?? "data/addressbook.csv (built in)",
    format: parseChoice("--format", parsed.format, BOOK_FORMATS),
    duplicates: parseChoice("--duplicates", parsed.duplicates, DUPLICATE_POLICIES) ?? "error",
    allowEmpty: parsed["allow-empty"] ?? false,
    emailColumn: parsed["email-column"],
    nameColumn: parsed["name-column"],
    workers: parseWholeNumber("--workers", parsed.workers ?? "1", 1, MAX_WORKERS),
    io: parseChoice("--io", parsed.io, ["auto", "epoll", "deno"] as const) ?? "auto",
    limits: {
      maxConnections: parseWholeNumber(
        "--max-connections",
        parsed["max-connections"] ?? String(DEFAULT_LIMITS.maxConnections),
        1,
        MAX_CONNECTIONS,
      ),
      idleTimeoutMs: seconds("--idle-timeout", parsed["idle-timeout"], "300", { zero: true }),
      frameTimeoutMs: seconds("--frame-timeout", parsed["frame-timeout"], "10", { zero: true }),
      writeTimeoutMs: seconds("--write-timeout", parsed["write-timeout"], "30", { zero: true }),
      maxPendingWrite: DEFAULT_LIMITS.maxPendingWrite,
    },
    shutdownTimeoutMs: seconds("--shutdown-timeout", parsed["shutdown-timeout"], "5", {
      zero: true,
    }),
    tlsCert,
    tlsKey,
    tlsClientCa,
    metricsPort: metricsPort === undefined ? undefined : parsePort("--metrics-port", metricsPort),
    ldap: ldapListen(parsed, tlsCert !== undefined),
    logFormat: parseChoice("--log-format", parsed["log-format"], ["text", "json"] as const) ??
      "text",
    logLevel: parseChoice(
      "--log-level",
      parsed["log-level"],
      ["debug", "info", "warn", "error"] as const,
    ) ??
      "info",
    watch: parsed.watch ?? false,
    watchSettleMs: seconds(
      "--watch-settle",
      parsed["watch-settle"],
      String(DEFAULT_WATCH_SETTLE_SECONDS),
      { zero: true },
    ),
    access: accessRules(parsed),
    clientLimits: {
      rate: allowance("--rate-limit", parsed["rate-limit"]),
      found: allowance("--found-limit", parsed["found-limit"]),
      maxConnectionsPerClient: parseWholeNumber(
        "--max-connections-per-client",
        parsed["max-connections-per-client"] ??
          String(defaultConnectionsPerClient(parsed["max-connections"])),
        0,
        MAX_CONNECTIONS,
      ),
    },
  };
}

/**
 * The default of `--max-connections-per-client`: a quarter of
 * `--max-connections`, so that one client (one address, one /64, the
 * source of a PROXY header) cannot take every slot and leave the others
 * SERVER_BUSY, while a pipelining client, a benchmark's 200 connections or
 * a pool never meets it. A fixed cap would not follow a `--max-connections`
 * raised for a large deployment. An unparsable `--max-connections` is
 * reported by its own check, so it counts as the default here.
 */
function defaultConnectionsPerClient(maxConnections: string | undefined): number {
  const max = Number(maxConnections ?? DEFAULT_LIMITS.maxConnections);
  const total = Number.isInteger(max) && max >= 1 ? max : DEFAULT_LIMITS.maxConnections;
  return Math.ceil(total / CLIENT_SHARE_OF_CONNECTIONS);
}

/** The LDAP flags, checked: ports, a base that is a DN, a size limit. */
function ldapListen(
  parsed: ReturnType<typeof readFlags>,
  hasTls: boolean,
): LdapListen | undefined {
  const plain = parsed["ldap-port"];
  const secure = parsed["ldaps-port"];
  const base = parsed["ldap-base"];
  const sizeLimit = parsed["ldap-size-limit"];
  if (plain === undefined && secure === undefined) {
    const stray = base !== undefined
      ? "--ldap-base"
      : sizeLimit !== undefined
      ? "--ldap-size-limit"
      : undefined;
    if (stray !== undefined) {
      throw new UsageError(`${stray} needs --ldap-port or --ldaps-port: no LDAP port is served.`);
    }
    return undefined;
  }
  if (secure !== undefined && !hasTls) {
    throw new UsageError("--ldaps-port needs --tls-cert and --tls-key: LDAPS speaks TLS.");
  }
  const dn = base ?? DEFAULT_LDAP_BASE;
  try {
    if (parseDn(dn).length === 0) throw new InvalidDnError("The DN is empty.");
  } catch (error) {
    if (!(error instanceof InvalidDnError)) throw error;
    throw new UsageError(
      `--ldap-base must be a distinguished name such as dc=example,dc=com, not "${dn}".`,
    );
  }
  return {
    port: plain === undefined ? undefined : parsePort("--ldap-port", plain),
    tlsPort: secure === undefined ? undefined : parsePort("--ldaps-port", secure),
    base: dn,
    sizeLimit: parseWholeNumber(
      "--ldap-size-limit",
      sizeLimit ?? String(DEFAULT_LDAP_SIZE_LIMIT),
      1,
      MAX_LDAP_SIZE_LIMIT,
    ),
  };
}

/** The highest --ldap-size-limit: a search's entries are answered in one go. */
const MAX_LDAP_SIZE_LIMIT = 1_000_000;

/** Checks the access flags now, so that a bad range is a usage error at start. */
function accessRules(parsed: ReturnType<typeof readFlags>): CliOptions["access"] {
  const proxyProtocol = parsed["proxy-protocol"] ?? false;
  const trustedProxies = parsed["trusted-proxy"];
  if (trustedProxies !== undefined && !proxyProtocol) {
    throw new UsageError(
      `--trusted-proxy ${trustedProxies} needs --proxy-protocol: without it no PROXY header is read.`,
    );
  }
  if (trustedProxies !== undefined) AccessList.parse("--trusted-proxy", trustedProxies);
  if (parsed.allow !== undefined) AccessList.parse("--allow", parsed.allow);
  return { allow: parsed.allow, proxyProtocol, trustedProxies };
}

function allowance(flag: string, value: string | undefined) {
  return value === undefined ? undefined : parseAllowance(flag, value);
}

/** The flags, parsed: mistakes are refused in the project's words (common/cli_args.ts). */
function readFlags(args: string[]) {
  return parseFlags({ args, allowPositionals: false, options: FLAGS }).values;
}

function seconds(
  flag: string,
  value: string | undefined,
  fallback: string,
  range: SecondsRange,
): number {
  return parseSeconds(flag, value ?? fallback, range);
}

/** Refuses a host written with a port, which Deno would take for an IPv6 address or a name. */
function checkHost(host: string): string {
  if (host === "") throw new UsageError('--host must be an address or a host name, not "".');
  const withPort = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(host);
  if (withPort) {
    throw new UsageError(
      `--host takes an address without a port, not "${host}": give the port with --port ${
        withPort[2]
      }.`,
    );
  }
  return host;
}

function checkData(data: string | undefined): string | undefined {
  if (data === "") {
    throw new UsageError('--data must name a book file, not "" (the path is empty).');
  }
  return data;
}
