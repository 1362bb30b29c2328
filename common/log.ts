/**
 * One-line-per-event logging to stderr, human-readable or JSON lines.
 *
 * Log fields are chosen by the caller; the convention in this project is
 * that no field ever holds an email address or a name, since both are
 * personal data. Peer addresses, counts, file names and line numbers are fine.
 *
 * ```ts
 * import { Logger } from "./log.ts";
 *
 * const log = new Logger({ format: "text" });
 * log.info("reload done", { entries: 50, file: "data/addressbook.csv" });
 * // 2026-11-24T10:00:00.000Z info reload done entries=50 file=data/addressbook.csv
 * ```
 *
 * @module
 */

/** How log lines are written: `text` for people, `json` for log collectors. */
export type LogFormat = "text" | "json";
/** How much is logged: `debug` adds per-connection events such as timeouts. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra fields of a log line: short values only, never personal data. */
export type LogFields = Record<string, string | number | boolean | undefined>;

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** One event, before it is formatted: what worker threads send to the main thread's logger. */
export interface LogRecord {
  /** How much it matters. */
  level: LogLevel;
  /** What happened, in a few words. */
  message: string;
  /** Details; never personal data. */
  fields: LogFields;
}

/** Options for a {@linkcode Logger}. */
export interface LoggerOptions {
  /** Line format; `text` by default. */
  format?: LogFormat;
  /** The lowest level written; `info` by default. */
  level?: LogLevel;
  /** Where lines go; stderr by default. Tests pass a collector. */
  write?: (line: string) => void;
  /** Hands each record on unformatted instead of writing it (a worker thread's logger does). */
  forward?: (record: LogRecord) => void;
}

const encoder = new TextEncoder();

function writeToStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** Writes one line per event. */
export class Logger {
  readonly #format: LogFormat;
  readonly #level: LogLevel;
  readonly #write: (line: string) => void;
  readonly #forward: ((record: LogRecord) => void) | undefined;

  /** Creates a logger; see {@linkcode LoggerOptions} for the defaults. */
  constructor(options: LoggerOptions = {}) {
    this.#format = options.format ?? "text";
    this.#level = options.level ?? "info";
    this.#write = options.write ?? writeToStderr;
    this.#forward = options.forward;
  }

  /** The lowest level written. */
  get level(): LogLevel {
    return this.#level;
  }

  /** Whether lines of this level are written, to skip building costly fields. */
  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= LEVEL_RANK[this.#level];
  }

  /** Logs a record made elsewhere, such as one forwarded from a worker thread. */
  record(record: LogRecord): void {
    this.#log(record.level, record.message, record.fields);
  }

  /** Logs a per-connection detail, written only at the debug level. */
  debug(message: string, fields?: LogFields): void {
    this.#log("debug", message, fields);
  }

  /** Logs an ordinary event: start, reload, shutdown. */
  info(message: string, fields?: LogFields): void {
    this.#log("info", message, fields);
  }

  /** Logs something an operator may want to look at: a refused connection, a bad peer. */
  warn(message: string, fields?: LogFields): void {
    this.#log("warn", message, fields);
  }

  /** Logs a failure: a reload that did not take, a listener that died. */
  error(message: string, fields?: LogFields): void {
    this.#log("error", message, fields);
  }

  #log(level: LogLevel, message: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    if (this.#forward) this.#forward({ level, message, fields });
    else this.#write(formatLine(this.#format, new Date(), level, message, fields));
  }
}

/** Formats one log line; pure, so the formats are easy to test. */
export function formatLine(
  format: LogFormat,
  time: Date,
  level: LogLevel,
  message: string,
  fields: LogFields,
): string {
  if (format === "json") {
    const record: Record<string, unknown> = { time: time.toISOString(), level, msg: message };
    // A field cannot overwrite the record's own keys.
    for (const [key, value] of Object.entries(fields)) if (!(key in record)) record[key] = value;
    return JSON.stringify(record);
  }
  // A line break in a message (an error's text) must not start a new log line.
  let line = `${time.toISOString()} ${level} ${message.replace(/[\r\n]+/g, " ")}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = String(value);
    line += ` ${key}=${/[\s"=\p{Cc}]/u.test(text) || text === "" ? JSON.stringify(text) : text}`;
  }
  return line;
}
