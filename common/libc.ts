/**
 * The few Linux system calls the epoll event loop needs, reached through
 * Deno's foreign function interface: sockets, epoll, read, write, close,
 * and io_uring's two to batch socket calls (io/socket_batch.ts).
 *
 * Why: Deno's own `Deno.listen` costs a promise and an event-loop turn per
 * read and per write, which is most of the time a small lookup takes. A
 * thread that owns its sockets and waits in `epoll_wait` itself, as Redis
 * does, answers in a few system calls. This module only declares the calls
 * and the constants; io/epoll.ts uses them.
 *
 * Needs `--allow-ffi` and Linux with glibc on x86_64 or aarch64;
 * {@linkcode openLibc} returns `undefined` anywhere else, and the server
 * then uses `Deno.listen`.
 *
 * @module
 */

/** The libc functions used, with their C signatures in Deno's FFI terms. */
export const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // ssize_t results read as i32: the low half of the register is the whole
  // value for the sizes used here (under 2 GiB), and a number, unlike the
  // bigint an isize result comes back as, costs no allocation per call.
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  dup: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  // For the process's figures in /metrics (server/process_metrics.ts): Deno
  // grants /proc only with --allow-all, and the server runs with less.
  open: { parameters: ["buffer", "i32"], result: "i32" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  // io_uring, for io/socket_batch.ts. glibc's syscall() only moves its
  // integer arguments into registers, so a fixed signature per call is
  // safe on x86_64 and aarch64 Linux, where both numbers are 425 and 426.
  io_uring_setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i32" },
  io_uring_enter: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "u32", "u32", "buffer", "usize"],
    result: "i32",
  },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  usleep: { parameters: ["u32"], result: "i32" },
} as const;

/** The bound system calls. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Linux constants, as in the C headers. */
export const AF_INET = 2;
/** IPv6 address family. */
export const AF_INET6 = 10;
/** A stream socket. */
export const SOCK_STREAM = 1;
/** Flag for socket() and accept4(): non-blocking from the start. */
export const SOCK_NONBLOCK = 0o4000;
/** Flag for socket() and accept4(): closed on exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** setsockopt level for socket options. */
export const SOL_SOCKET = 1;
/** Allows rebinding a port with connections in TIME_WAIT. */
export const SO_REUSEADDR = 2;
/** Lets several sockets share one port; the kernel spreads connections. */
export const SO_REUSEPORT = 15;
/** setsockopt level for TCP options. */
export const IPPROTO_TCP = 6;
/** Turns off Nagle's algorithm. */
export const TCP_NODELAY = 1;
/** getsockopt: the TCP connection's `struct tcp_info`. */
export const TCP_INFO = 11;
/** shutdown(2): stop sending (the peer reads end of stream). */
export const SHUT_WR = 1;
/** recv(2) flag: return the bytes waiting but leave them in the socket. */
export const MSG_PEEK = 2;
/** Flag for send(): a write to a closed connection fails with EPIPE and raises no SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** epoll: readable. */
export const EPOLLIN = 0x1;
/** epoll: writable. */
export const EPOLLOUT = 0x4;
/** epoll_ctl: add a descriptor. */
export const EPOLL_CTL_ADD = 1;
/** epoll_ctl: change a descriptor's events. */
export const EPOLL_CTL_MOD = 3;
/** errno: try again (nothing to read, or no room to write). */
export const EAGAIN = 11;
/** errno: interrupted by a signal. */
export const EINTR = 4;
/** errno: the address is in use. */
export const EADDRINUSE = 98;
/** errno: no such address on this machine. */
export const EADDRNOTAVAIL = 99;
/** errno: permission denied (a port below 1024). */
export const EACCES = 13;
/** open(2): read only. */
export const O_RDONLY = 0;
/** open(2): closed on exec. */
export const O_CLOEXEC = 0o2000000;
/** Offset of `d_name` in glibc's `struct dirent` on 64-bit Linux (after ino, off, reclen, type). */
export const DIRENT_NAME_OFFSET = 19;

/** Bytes of a `struct epoll_event`: packed on x86_64, padded to 16 elsewhere. */
export const EPOLL_EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
/** Offset of the data field in a `struct epoll_event`. */
export const EPOLL_DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;

/** The loaded library. */
export interface Libc {
  /** The system calls. */
  calls: LibcSymbols;
  /** The calling thread's errno, read right after a call that failed. */
  errno(): number;
  /** read(2) into `buffer`; returns the byte count, 0 at end of stream, or -1. */
  read(fd: number, buffer: Uint8Array, length: number): number;
  /** write(2) from `buffer`; returns the byte count written, or -1. */
  write(fd: number, buffer: Uint8Array, length: number): number;
  /** recv(2) with MSG_PEEK: copies what is waiting into `buffer` and leaves it there; as read. */
  peek(fd: number, buffer: Uint8Array, length: number): number;
  /** recv(2) from a socket into `buffer`; as read, with less of the kernel's file layer on the way. */
  receive(fd: number, buffer: Uint8Array, length: number): number;
  /** send(2) to a socket with MSG_NOSIGNAL; as write, with less of the kernel's file layer on the way. */
  send(fd: number, buffer: Uint8Array, length: number): number;
}

/**
 * Loads libc when this platform and the permissions allow it; returns
 * `undefined` otherwise, so callers fall back to `Deno.listen`.
 */
export function openLibc(): Libc | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return undefined;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    return undefined; // musl, or no libc.so.6 on the search path
  }
  const calls = library.symbols;
  // A 64-bit argument must be a bigint: Deno's FFI also takes a number there,
  // but then leaves its fast call path (measured: about 500 ns a call instead
  // of 250, against 260 with a fresh BigInt).
  const readSize = sizeCache();
  const writeSize = sizeCache();
  return {
    calls,
    read: (fd, buffer, length) => calls.read(fd, buffer, readSize(length)),
    write: (fd, buffer, length) => calls.write(fd, buffer, writeSize(length)),
    peek: (fd, buffer, length) => calls.recv(fd, buffer, readSize(length), MSG_PEEK),
    receive: (fd, buffer, length) => calls.recv(fd, buffer, readSize(length), 0),
    send: (fd, buffer, length) => calls.send(fd, buffer, writeSize(length), MSG_NOSIGNAL),
    errno() {
      const pointer = calls.__errno_location();
      return pointer === null ? 0 : new Deno.UnsafePointerView(pointer).getInt32();
    },
  };
}

/**
 * A size argument as the BigInt a 64-bit FFI parameter needs, reusing the
 * last one: the same sizes recur (every read asks for the whole buffer).
 */
function sizeCache(): (length: number) => bigint {
  let lastLength = -1;
  let lastSize = 0n;
  return (length) => length === lastLength ? lastSize : (lastSize = BigInt(lastLength = length));
}

/** Encodes an IPv4 or IPv6 literal and a port as a `struct sockaddr`; `undefined` for a name. */
export function encodeSockaddr(hostname: string, port: number): Uint8Array | undefined {
  const v4 = parseIpv4(hostname === "localhost" ? "127.0.0.1" : hostname);
  if (v4) {
    const address = new Uint8Array(16);
    new DataView(address.buffer).setUint16(0, AF_INET, true);
    new DataView(address.buffer).setUint16(2, port, false);
    address.set(v4, 4);
    return address;
  }
  const v6 = parseIpv6(hostname);
  if (v6) {
    const address = new Uint8Array(28);
    new DataView(address.buffer).setUint16(0, AF_INET6, true);
    new DataView(address.buffer).setUint16(2, port, false);
    address.set(v6, 8);
    return address;
  }
  return undefined;
}

/** Decodes a `struct sockaddr` (IPv4 or IPv6) into a host and port. */
export function decodeSockaddr(address: Uint8Array): { hostname: string; port: number } {
  const view = new DataView(address.buffer, address.byteOffset, address.byteLength);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === AF_INET) return { hostname: address.subarray(4, 8).join("."), port };
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(view.getUint16(8 + 2 * i, false).toString(16));
  return { hostname: compressIpv6(groups), port };
}

/** The RFC 5952 form: the longest run of two or more zero groups (the first, on a tie) becomes "::". */
function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < groups.length; start++) {
    let length = 0;
    while (groups[start + length] === "0") length++;
    if (length > bestLength) {
      bestStart = start;
      bestLength = length;
    }
  }
  if (bestStart < 0) return groups.join(":");
  const head = groups.slice(0, bestStart).join(":");
  const tail = groups.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^\d{1,3}$/.test(part) && +part <= 255)) {
    return undefined;
  }
  return Uint8Array.from(parts, Number);
}

function parseIpv6(text: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:]+$/.test(text) || !text.includes(":")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((group) => /^[0-9a-fA-F]{1,4}$/.test(group))) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  });
  return bytes;
}

/** Why a listening socket could not be made: the errno, for the caller to word. */
export class SocketError extends Error {
  /** The errno of the call that failed. */
  readonly errno: number;

  /** Creates the error for a failed call. */
  constructor(call: string, errno: number) {
    super(`${call} failed with errno ${errno}.`);
    this.name = "SocketError";
    this.errno = errno;
  }
}

/**
 * Opens a non-blocking listening TCP socket on an IP literal, with
 * TCP_NODELAY (replies are written whole, so Nagle's delay would only add
 * latency) and SO_REUSEPORT when `sharePort` so other threads can join it. Returns the
 * descriptor and the port (the real one when 0 was asked for), or
 * `undefined` when `hostname` is a name rather than an address.
 *
 * @throws {SocketError} when a call fails (EADDRINUSE for a port in use).
 */
export function listenTcp(
  libc: Libc,
  hostname: string,
  port: number,
  sharePort: boolean,
): { fd: number; port: number } | undefined {
  const address = encodeSockaddr(hostname, port);
  if (address === undefined) return undefined;
  const { calls } = libc;
  const family = new DataView(address.buffer).getUint16(0, true);
  const fd = calls.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SocketError("socket", libc.errno());
  const one = new Uint8Array(new Int32Array([1]).buffer);
  const fail = (call: string): never => {
    const errno = libc.errno();
    calls.close(fd);
    throw new SocketError(call, errno);
  };
  if (calls.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) !== 0) fail("setsockopt");
  if (sharePort && calls.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4) !== 0) {
    fail("setsockopt");
  }
  // Accepted sockets inherit TCP_NODELAY from the listener: one call here, none per connection.
  if (calls.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4) !== 0) fail("setsockopt");
  if (calls.bind(fd, address, address.length) !== 0) fail("bind");
  if (calls.listen(fd, 1024) !== 0) fail("listen");
  const bound = new Uint8Array(128);
  const length = new Uint32Array([bound.length]);
  if (calls.getsockname(fd, bound, new Uint8Array(length.buffer)) !== 0) fail("getsockname");
  return { fd, port: decodeSockaddr(bound).port };
}

/** Offset of `tcpi_bytes_acked` (a u64, Linux 4.1 and later) in `struct tcp_info`. */
const TCPI_BYTES_ACKED = 120;
/** Room for `struct tcp_info` up to and past `tcpi_bytes_acked`. */
const TCP_INFO_BYTES = 256;
const tcpInfo = new Uint8Array(TCP_INFO_BYTES);
const tcpInfoView = new DataView(tcpInfo.buffer);
const optionLength = new Uint32Array(1);
const optionLengthBytes = new Uint8Array(optionLength.buffer);

/**
 * How many bytes the peer's TCP has acknowledged on the connected socket
 * `fd` (TCP_INFO's `tcpi_bytes_acked`): what the peer's kernel took, which
 * grows as the peer reads even while the socket stays unwritable. -1 when
 * it cannot be read (not a TCP socket, a kernel before 4.1).
 */
export function tcpBytesAcked(libc: Libc, fd: number): number {
  optionLength[0] = TCP_INFO_BYTES;
  if (libc.calls.getsockopt(fd, IPPROTO_TCP, TCP_INFO, tcpInfo, optionLengthBytes) !== 0) return -1;
  if (optionLength[0] < TCPI_BYTES_ACKED + 8) return -1;
  return Number(tcpInfoView.getBigUint64(TCPI_BYTES_ACKED, true));
}

/** Descriptors not open in a row after which {@linkcode findSocketBetween} stops looking. */
export const FREE_DESCRIPTORS_AFTER_LAST = 4096;
/** errno: not an open descriptor. */
export const EBADF = 9;

/** An address as Deno reports it (`Deno.NetAddr`'s hostname and port). */
export interface SocketAddress {
  /** An IPv4 or IPv6 literal; an IPv4-mapped IPv6 one (`::ffff:192.0.2.7`) is its IPv4 address. */
  hostname: string;
  /** The port. */
  port: number;
}

/**
 * The descriptor of this process's TCP socket connected from `local` to
 * `remote`, or -1 when none is found: for the `Deno.listen` loop, whose
 * connections do not say which descriptor they are. Descriptors are handed
 * out lowest first, so it asks each in turn for its two addresses, from 0
 * until {@linkcode FREE_DESCRIPTORS_AFTER_LAST} in a row are not open (Deno
 * lets only `--allow-all` list /proc/self/fd). That costs a system call or
 * two per descriptor: call it once per connection, and only when needed. A
 * descriptor found this way may be closed and reused once the connection
 * is closed: check with {@linkcode isSocketBetween} before each use.
 */
export function findSocketBetween(
  libc: Libc,
  local: SocketAddress,
  remote: SocketAddress,
): number {
  for (let fd = 0, free = 0; free < FREE_DESCRIPTORS_AFTER_LAST; fd++) {
    sockaddrLength[0] = sockaddr.length;
    if (libc.calls.getpeername(fd, sockaddr, sockaddrLengthBytes) !== 0) {
      free = libc.errno() === EBADF ? free + 1 : 0;
      continue;
    }
    free = 0;
    if (isSocketBetween(libc, fd, local, remote)) return fd;
  }
  return -1;
}

const sockaddr = new Uint8Array(128);
const sockaddrLength = new Uint32Array(1);
const sockaddrLengthBytes = new Uint8Array(sockaddrLength.buffer);

/** Whether `fd` is a socket whose local address is `local` and whose peer is `remote`. */
export function isSocketBetween(
  libc: Libc,
  fd: number,
  local: SocketAddress,
  remote: SocketAddress,
): boolean {
  sockaddrLength[0] = sockaddr.length;
  if (libc.calls.getpeername(fd, sockaddr, sockaddrLengthBytes) !== 0) return false;
  if (!sameAddress(decodeSockaddr(sockaddr), remote)) return false;
  sockaddrLength[0] = sockaddr.length;
  if (libc.calls.getsockname(fd, sockaddr, sockaddrLengthBytes) !== 0) return false;
  return sameAddress(decodeSockaddr(sockaddr), local);
}

const MAPPED_IPV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

function sameAddress(decoded: SocketAddress, wanted: SocketAddress): boolean {
  return decoded.port === wanted.port && plainHost(decoded.hostname) === plainHost(wanted.hostname);
}

/** An IPv4-mapped IPv6 address as its IPv4 address, other addresses as given. */
function plainHost(hostname: string): string {
  const mapped = MAPPED_IPV4.exec(hostname);
  if (mapped !== null) return mapped[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(hostname);
  if (hex === null) return hostname.toLowerCase();
  const high = parseInt(hex[1], 16);
  const low = parseInt(hex[2], 16);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}
