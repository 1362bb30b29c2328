/**
 * The admission rules, decided once per connection and purely: who may
 * send a PROXY header, who may query, and what a refused client is told.
 *
 * Two questions are asked of each connection, in this order:
 *
 * 1. Of the socket's peer, when `--proxy-protocol` is on: is it one of the
 *    `--trusted-proxy` ranges? A PROXY header lets its sender claim any
 *    client address, so only the balancers themselves may send one; anyone
 *    else is refused before a byte of theirs is read.
 * 2. Of the client (the header's source address, or the peer itself
 *    without a header or for a `LOCAL` one): is it allowed? With `--allow`,
 *    the list decides. Without it, protected mode (as in Redis) serves
 *    loopback clients only when the server listens beyond loopback, so
 *    that a server started with `--host 0.0.0.0` does not hand the
 *    directory to the whole network by accident; the refusal says how to
 *    open it up.
 *
 * The reply texts say why, and never hold a name or an email.
 *
 * ```ts
 * import { AccessList } from "./list.ts";
 * import { AccessPolicy, protectedModeApplies } from "./policy.ts";
 *
 * const policy = new AccessPolicy({
 *   protectedMode: protectedModeApplies("0.0.0.0", { allow: false, clientCertificates: false }),
 *   trustedProxies: AccessList.parse("--trusted-proxy", "127.0.0.0/8,::1"),
 * });
 * policy.peerVerdict("127.0.0.1"); // "ok": may send a PROXY header
 * policy.clientVerdict("192.0.2.7"); // "protected_mode"
 * AccessPolicy.replyText("protected_mode"); // the FORBIDDEN reply's text, naming --allow
 * ```
 *
 * @module
 */

import { AccessList, DEFAULT_TRUSTED_PROXIES, isLoopback } from "./list.ts";

/** Why a connection is refused with FORBIDDEN, or `"ok"`; the names suit logs and metrics. */
export type AccessVerdict = "ok" | "not_allowed" | "protected_mode" | "untrusted_proxy";

/** The rules, from the command line. */
export interface AccessPolicyOptions {
  /** `--allow`: the clients that may query; absent when the flag was not given. */
  allow?: AccessList;
  /** Whether protected mode applies (see {@linkcode protectedModeApplies}); ignored with `allow`. */
  protectedMode: boolean;
  /** `--trusted-proxy` when `--proxy-protocol` is on; absent when PROXY headers are off. */
  trustedProxies?: AccessList;
}

/**
 * The rules as the command line gave them, as plain data that can be posted
 * to a serving thread (which builds its {@linkcode AccessPolicy} with
 * {@linkcode AccessPolicy.fromRules}).
 */
export interface AccessRules {
  /** The `--allow` values as given; absent when the flag was not. */
  allow?: readonly string[];
  /** Whether protected mode applies (see {@linkcode protectedModeApplies}). */
  protectedMode: boolean;
  /** Whether connections start with a PROXY header (`--proxy-protocol`). */
  proxyProtocol: boolean;
  /** `--trusted-proxy`: who may send one; {@linkcode DEFAULT_TRUSTED_PROXIES} by default. */
  trustedProxies?: string;
}

const REPLY_TEXTS: Readonly<Record<Exclude<AccessVerdict, "ok">, string>> = {
  not_allowed: "This client's address is not in the server's --allow list.",
  protected_mode:
    "The server is in protected mode and serves only loopback clients: start it with --allow CIDR (or --allow any) to serve others.",
  untrusted_proxy:
    "The server expects a PROXY header from its trusted proxies only (--trusted-proxy), and this peer is not one.",
};

/**
 * Whether protected mode applies: the server listens on an address other
 * than loopback, and neither `--allow` nor a client-certificate requirement
 * says who may connect.
 *
 * ```ts
 * import { protectedModeApplies } from "./policy.ts";
 * protectedModeApplies("0.0.0.0", { allow: false, clientCertificates: false }); // true
 * protectedModeApplies("127.0.0.1", { allow: false, clientCertificates: false }); // false
 * protectedModeApplies("::", { allow: true, clientCertificates: false }); // false
 * ```
 */
export function protectedModeApplies(
  listenHost: string,
  given: { allow: boolean; clientCertificates: boolean },
): boolean {
  if (given.allow || given.clientCertificates) return false;
  return !(isLoopback(listenHost) || listenHost.toLowerCase() === "localhost");
}

/**
 * The admission decisions for one server. Both checks are an
 * allocation-free range match.
 */
export class AccessPolicy {
  readonly #allow: AccessList | undefined;
  readonly #protectedMode: boolean;
  readonly #trustedProxies: AccessList | undefined;

  /** Creates the policy from the parsed flags. */
  constructor(options: AccessPolicyOptions) {
    this.#allow = options.allow;
    this.#protectedMode = options.protectedMode;
    this.#trustedProxies = options.trustedProxies;
  }

  /**
   * Builds the policy from rules checked on the command line, or returns
   * `undefined` when they restrict nobody, so that sessions skip the checks.
   *
   * @throws {UsageError} when a list is malformed (the command line checks them first).
   */
  static fromRules(rules: AccessRules): AccessPolicy | undefined {
    const allow = rules.allow === undefined ? undefined : AccessList.parse("--allow", rules.allow);
    if (!rules.proxyProtocol && !rules.protectedMode && (allow?.matchesEveryone ?? true)) {
      return undefined;
    }
    return new AccessPolicy({
      allow,
      protectedMode: rules.protectedMode,
      trustedProxies: rules.proxyProtocol
        ? AccessList.parse("--trusted-proxy", rules.trustedProxies ?? DEFAULT_TRUSTED_PROXIES)
        : undefined,
    });
  }

  /** Whether connections must start with a PROXY header (`--proxy-protocol`). */
  get expectsProxyHeader(): boolean {
    return this.#trustedProxies !== undefined;
  }

  /**
   * The first check, on accept, of the socket's peer address: with PROXY
   * headers on, `"untrusted_proxy"` unless the peer is a trusted proxy;
   * without them, the client check of the peer.
   */
  peerVerdict(peer: string): AccessVerdict {
    if (this.#trustedProxies === undefined) return this.clientVerdict(peer);
    return this.#trustedProxies.allows(peer) ? "ok" : "untrusted_proxy";
  }

  /**
   * The client check: of the PROXY header's source address, or of the
   * peer's address when there is no header or it names no client.
   */
  clientVerdict(client: string): AccessVerdict {
    if (this.#allow !== undefined) return this.#allow.allows(client) ? "ok" : "not_allowed";
    if (this.#protectedMode && !isLoopback(client)) return "protected_mode";
    return "ok";
  }

  /**
   * The text of the FORBIDDEN reply for a refusal: one sentence saying why,
   * naming the flag that would change it.
   */
  static replyText(verdict: Exclude<AccessVerdict, "ok">): string {
    return REPLY_TEXTS[verdict];
  }
}
