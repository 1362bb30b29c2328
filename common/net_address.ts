/**
 * Formatting of network addresses for messages and logs, shared by the
 * server, the client and the benchmark.
 *
 * @module
 */

/**
 * Formats a host and port, bracketing an IPv6 address as URLs do.
 *
 * ```ts
 * import { formatAddress } from "./net_address.ts";
 * formatAddress("127.0.0.1", 8080); // "127.0.0.1:8080"
 * formatAddress("::1", 8080); // "[::1]:8080"
 * ```
 */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}
