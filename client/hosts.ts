/**
 * Lists of servers as a user types them: `host[:port]` entries separated by
 * commas, IPv6 addresses in brackets (`[::1]:8080`), a port missing from an
 * entry taken from a default. Pure: nothing here resolves or connects.
 *
 * ```ts
 * import { parseHostList } from "./hosts.ts";
 *
 * parseHostList("a.example,b.example:9000,[::1]", 8080);
 * // [{ hostname: "a.example", port: 8080 }, { hostname: "b.example", port: 9000 },
 * //  { hostname: "::1", port: 8080 }]
 * ```
 *
 * @module
 */

import type { Endpoint } from "./connection.ts";

const MAX_PORT = 65535;

/**
 * Parses a comma-separated list of `host[:port]`. An entry's port defaults
 * to `defaultPort`; an IPv6 address takes brackets when it has a port
 * (`[::1]:8080`), and may go without them when it has none (`::1`).
 *
 * @throws {RangeError} naming the entry, for an empty entry, a port that is
 * not a whole number from 1 to 65535, or an unclosed bracket.
 */
export function parseHostList(text: string, defaultPort: number): Endpoint[] {
  return text.split(",").map((entry) => parseHostEntry(entry.trim(), defaultPort));
}

function parseHostEntry(entry: string, defaultPort: number): Endpoint {
  if (entry === "") {
    throw new RangeError("The host list has an empty entry: give host[:port] between commas.");
  }
  if (entry.startsWith("[")) {
    const close = entry.indexOf("]");
    if (close < 0) throw new RangeError(`The host "${entry}" has no closing bracket.`);
    const hostname = entry.slice(1, close);
    const rest = entry.slice(close + 1);
    if (hostname === "") throw new RangeError(`The host "${entry}" is empty inside its brackets.`);
    if (rest === "") return { hostname, port: defaultPort };
    if (!rest.startsWith(":")) {
      throw new RangeError(`The host "${entry}" has "${rest}" after its bracket, not ":PORT".`);
    }
    return { hostname, port: parseEntryPort(entry, rest.slice(1)) };
  }
  const colon = entry.indexOf(":");
  // Several colons and no brackets: an IPv6 address on its own.
  if (colon < 0 || entry.indexOf(":", colon + 1) >= 0) {
    return { hostname: entry, port: defaultPort };
  }
  const hostname = entry.slice(0, colon);
  if (hostname === "") throw new RangeError(`The host "${entry}" has a port but no host name.`);
  return { hostname, port: parseEntryPort(entry, entry.slice(colon + 1)) };
}

function parseEntryPort(entry: string, text: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= MAX_PORT)) {
    throw new RangeError(
      `The port of "${entry}" must be a whole number from 1 to ${MAX_PORT}, not "${text}".`,
    );
  }
  return port;
}
