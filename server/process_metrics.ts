/**
 * The process's own figures for `/metrics`, under the names Prometheus's
 * client libraries give them (client_golang's process collector, the
 * Python and Java clients alike), so that the dashboards and alerts written
 * for those work unchanged: start time, resident memory, CPU seconds, open
 * and maximum file descriptors.
 *
 * They come from Linux's `/proc/self` (as those libraries read them):
 * `stat` for the CPU time and the start time (in clock ticks since boot,
 * plus `btime` from `/proc/stat`), `fd` for the open descriptors, `limits`
 * for their soft limit; the resident memory is Deno's own measure. Deno
 * lets a program read `/proc` only with `--allow-all` (which grants FFI
 * too), so the files are read through libc (common/libc.ts), as the
 * server's `--allow-ffi` allows. The parsing is pure and tested on sample
 * text; only {@linkcode readProcessFigures} reads. Elsewhere than Linux, or
 * without FFI, there are no process figures and `/metrics` leaves them
 * out, as those libraries do.
 *
 * ```ts ignore
 * import { readProcessFigures } from "./process_metrics.ts";
 *
 * readProcessFigures()?.openFds; // 23
 * ```
 *
 * @module
 */

import { DIRENT_NAME_OFFSET, O_CLOEXEC, O_RDONLY, openLibc } from "../common/libc.ts";

/** What `/metrics` reports about the process. */
export interface ProcessFigures {
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds: number;
  /** Resident memory, in bytes. */
  residentMemoryBytes: number;
  /** User and system CPU time spent, in seconds. */
  cpuSeconds: number;
  /** File descriptors open now. */
  openFds: number;
  /** The most it may open (the soft limit, `ulimit -n`); Infinity when unlimited. */
  maxFds: number;
}

/**
 * Clock ticks per second in `/proc` (USER_HZ): 100 on every Linux
 * architecture this runs on, whatever the kernel's own tick rate; Go's
 * procfs, which client_golang reads with, assumes the same.
 */
export const USER_HZ = 100;

/** Fields of `/proc/self/stat` counted after the command's closing parenthesis (field 3 is 0). */
const STAT_UTIME = 14 - 3;
const STAT_STIME = 15 - 3;
const STAT_STARTTIME = 22 - 3;

/** CPU ticks and start ticks of a process, from its `/proc/PID/stat` line. */
export interface ProcStat {
  /** User plus system time, in clock ticks. */
  cpuTicks: number;
  /** When it started, in clock ticks after boot. */
  startTicks: number;
}

/**
 * Reads the CPU and start ticks from a `/proc/PID/stat` line. The command
 * name (field 2) is in parentheses and may hold spaces and parentheses
 * itself, so the fields are counted from its last closing one.
 *
 * @throws {RangeError} when the line does not have those fields as numbers.
 */
export function parseProcStat(line: string): ProcStat {
  const fields = line.slice(line.lastIndexOf(")") + 2).trim().split(" ");
  const number = (index: number) => {
    const value = Number(fields[index]);
    if (fields[index] === undefined || !Number.isFinite(value)) {
      throw new RangeError(`Cannot read /proc/self/stat: field ${index + 3} is not a number.`);
    }
    return value;
  };
  return { cpuTicks: number(STAT_UTIME) + number(STAT_STIME), startTicks: number(STAT_STARTTIME) };
}

/**
 * Reads the boot time, in seconds since the epoch, from `/proc/stat`'s
 * `btime` line.
 *
 * @throws {RangeError} when there is no such line.
 */
export function parseBootTime(procStat: string): number {
  const match = /^btime (\d+)$/m.exec(procStat);
  if (match === null) throw new RangeError("Cannot read /proc/stat: it has no btime line.");
  return Number(match[1]);
}

/**
 * Reads the soft limit on open files from `/proc/self/limits`; Infinity
 * when it is `unlimited`.
 *
 * @throws {RangeError} when there is no "Max open files" line.
 */
export function parseMaxOpenFiles(limits: string): number {
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  if (match === null) {
    throw new RangeError("Cannot read /proc/self/limits: it has no Max open files line.");
  }
  return match[1] === "unlimited" ? Infinity : Number(match[1]);
}

/** How `/proc` is read: its files' text, and the entries of a folder. */
interface ProcReader {
  /**
   * The whole text of a file.
   *
   * @throws {ProcUnreadable} when it cannot be read.
   */
  text(path: string): string;
  /**
   * The entries of a folder whose names start with a digit (in
   * `/proc/self/fd`, the descriptors).
   *
   * @throws {ProcUnreadable} when it cannot be read.
   */
  countNumbered(folder: string): number;
}

/** A `/proc` file or folder could not be read: there are no process figures then. */
class ProcUnreadable extends Error {
  constructor(path: string) {
    super(`Cannot read ${path}.`);
    this.name = "ProcUnreadable";
  }
}

/** The reader, made once; `null` where there is none (no FFI). */
let reader: ProcReader | null | undefined;

/**
 * The process's figures now, or `undefined` where `/proc` cannot be read
 * (not Linux, or no FFI): then `/metrics` has none.
 */
export function readProcessFigures(): ProcessFigures | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (reader === undefined) reader = libcReader() ?? null;
  if (reader === null) return undefined;
  try {
    const stat = parseProcStat(reader.text("/proc/self/stat"));
    const bootTime = parseBootTime(reader.text("/proc/stat"));
    return {
      startTimeSeconds: bootTime + stat.startTicks / USER_HZ,
      residentMemoryBytes: Deno.memoryUsage().rss,
      cpuSeconds: stat.cpuTicks / USER_HZ,
      // Counting opened one more: the folder being read.
      openFds: reader.countNumbered("/proc/self/fd") - 1,
      maxFds: parseMaxOpenFiles(reader.text("/proc/self/limits")),
    };
  } catch (error) {
    if (error instanceof ProcUnreadable || error instanceof RangeError) return undefined;
    throw error;
  }
}

const CHUNK_BYTES = 65536;
const ZERO = 0x30;
const NINE = 0x39;

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}

/** A C string: the path in UTF-8 and a NUL. */
function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text + "\0");
}

/** Reads `/proc` through libc's open, read, opendir and readdir; `undefined` without FFI. */
function libcReader(): ProcReader | undefined {
  const libc = openLibc();
  if (libc === undefined) return undefined;
  const { calls } = libc;
  const chunk = new Uint8Array(CHUNK_BYTES);
  return {
    text(path) {
      const fd = calls.open(cString(path), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw new ProcUnreadable(path);
      try {
        const parts: Uint8Array[] = [];
        for (;;) {
          const count = libc.read(fd, chunk, chunk.length);
          if (count < 0) throw new ProcUnreadable(path);
          if (count === 0) break;
          parts.push(chunk.slice(0, count));
        }
        const decoder = new TextDecoder();
        return parts.map((part, i) => decoder.decode(part, { stream: i < parts.length - 1 }))
          .join("");
      } finally {
        calls.close(fd);
      }
    },
    countNumbered(folder) {
      const dir = calls.opendir(cString(folder));
      if (dir === null) throw new ProcUnreadable(folder);
      try {
        let count = 0;
        for (let entry = calls.readdir(dir); entry !== null; entry = calls.readdir(dir)) {
          if (isDigit(new Deno.UnsafePointerView(entry).getUint8(DIRENT_NAME_OFFSET))) count++;
        }
        return count;
      } finally {
        calls.closedir(dir);
      }
    },
  };
}
