/**
 * The server and the client as real processes, run as `deno task` runs
 * them (with the permissions the task grants, no more): spawning, reading
 * their output line by line as it arrives, waiting for a line, and running
 * one to its exit. Every wait is bounded.
 *
 * ```ts ignore
 * import { runServerToExit, ServerProcess } from "./processes.ts";
 *
 * await using server = await ServerProcess.start(["--data", bookPath]);
 * using client = await server.connect();
 * await client.query("ada@example.com");
 * const { code, stderr } = await runServerToExit(["--data", "missing.csv"]);
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { EVENT_DEADLINE_MS, START_DEADLINE_MS, withDeadline } from "./deadlines.ts";
import { CLIENT_FLAGS, REPO_DIR, SERVER_FLAGS } from "./repo.ts";
import { WireClient } from "./wire_client.ts";

/** The server's start line: group 1 is `tls://` over TLS, 2 the hostname, 3 the port. */
export const LISTENING = /listening on (tls:\/\/)?(\S+):(\d+)/;

/** Asserts that a process printed no stack trace nor uncaught error. */
export function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, "a stack trace was printed");
  assert.doesNotMatch(stderr, /Uncaught/, "an uncaught error was printed");
}

/** The message of a log line: `msg` of a JSON line, else the whole line. */
function messageOf(line: string): string {
  if (line.startsWith("{")) {
    try {
      const parsed = JSON.parse(line);
      if (typeof parsed?.msg === "string") return parsed.msg;
    } catch {
      // Not JSON after all: match the raw line.
    }
  }
  return line;
}

/** A line {@linkcode LineCollector.waitFor} found, where, and what matched. */
export interface FoundLine {
  /** The whole line. */
  line: string;
  /** Its index in {@linkcode LineCollector.lines}. */
  index: number;
  /** The match of the pattern against the line's message. */
  match: RegExpExecArray;
}

/** The lines of a stream, gathered as they arrive, with a way to await one. */
export class LineCollector {
  /** Every whole line so far, in order. */
  readonly lines: string[] = [];
  /** Settles when the stream has ended and every line is in {@linkcode lines}. */
  readonly done: Promise<void>;
  #ended = false;
  #waiters: (() => void)[] = [];

  /** Starts reading `stream` at once. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#read(stream);
  }

  /** The lines so far, joined. */
  get text(): string {
    return this.lines.join("\n");
  }

  /**
   * Waits for a line at or after index `from` whose message (`msg` of a JSON
   * line, else the line) matches `pattern`.
   */
  async waitFor(pattern: RegExp, from = 0, deadlineMs = EVENT_DEADLINE_MS): Promise<FoundLine> {
    const deadline = Date.now() + deadlineMs;
    for (let i = from;;) {
      for (; i < this.lines.length; i++) {
        const match = pattern.exec(messageOf(this.lines[i]));
        if (match) return { line: this.lines[i], index: i, match };
      }
      if (this.#ended) {
        throw new Error(
          `The server's stderr ended with no line matching ${pattern}:\n${this.text}`,
        );
      }
      const changed = new Promise<void>((resolve) => this.#waiters.push(resolve));
      await withDeadline(
        changed,
        `a line matching ${pattern}:\n${this.text}`,
        deadline - Date.now(),
      );
    }
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
        this.#wake();
      }
    } finally {
      if (rest !== "") this.lines.push(rest);
      this.#ended = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/** How a process ended and all it printed. */
export interface ProcessOutput {
  /** The exit code. */
  code: number;
  /** All of stdout. */
  stdout: string;
  /** All of stderr. */
  stderr: string;
}

/** Resource limits to run a subprocess under. */
export interface ProcessLimits {
  /** Its `ulimit -n`: how many file descriptors it may hold. */
  openFiles?: number;
}

/** A `deno` subprocess run in {@linkcode REPO_DIR}; disposing of it kills it and waits for it. */
export class Subprocess implements AsyncDisposable {
  /** The process. */
  readonly child: Deno.ChildProcess;
  /** Its stderr, line by line. */
  readonly stderr: LineCollector;
  /** All of its stdout, once it has ended. */
  readonly stdout: Promise<string>;

  /**
   * Spawns `deno` (this very executable) with `args`; with `openFiles`, under
   * that `ulimit -n` (through bash), to run it short of file descriptors.
   */
  constructor(args: readonly string[], limits: ProcessLimits = {}) {
    const { openFiles } = limits;
    const [command, commandArgs] = openFiles === undefined
      ? [Deno.execPath(), [...args]]
      : ["bash", ["-c", `ulimit -n ${openFiles} && exec "$0" "$@"`, Deno.execPath(), ...args]];
    this.child = new Deno.Command(command, {
      args: commandArgs,
      cwd: REPO_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stderr = new LineCollector(this.child.stderr);
    this.stdout = new Response(this.child.stdout).text();
  }

  /** Sends `signal` to the process. */
  signal(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  /** Waits for the process to exit on its own (killing it at the deadline), and its output to end. */
  async exit(deadlineMs = EVENT_DEADLINE_MS): Promise<Deno.CommandStatus> {
    const status = await withDeadline(
      this.child.status,
      "the process to exit",
      deadlineMs,
      () => this.#kill(),
    );
    await this.stderr.done;
    await this.stdout;
    return status;
  }

  /** Like {@linkcode exit}, bounded as a start is, and returns the code and all the output. */
  async output(deadlineMs = START_DEADLINE_MS): Promise<ProcessOutput> {
    const { code } = await this.exit(deadlineMs);
    return { code, stdout: await this.stdout, stderr: this.stderr.text };
  }

  /** Kills the process and waits for it and its output to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#kill();
    await this.child.status;
    await this.stderr.done;
    await this.stdout;
  }

  #kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
  }
}

/** A `server.ts` subprocess run with {@linkcode SERVER_FLAGS}. */
export class ServerProcess extends Subprocess {
  /** Where it listens, from its start line. */
  hostname = "";
  /** The port it listens on, from its start line. */
  port = 0;
  /** Whether the start line says `tls://`. */
  tls = false;
  /** The line that said where it listens. */
  startLine = "";

  /** Spawns `server.ts` with `args`, adding `--port 0` unless a port is given. */
  constructor(args: readonly string[], limits: ProcessLimits = {}) {
    const withPort = args.includes("--port") ? args : ["--port", "0", ...args];
    super([...SERVER_FLAGS, ...withPort], limits);
  }

  /** Spawns a server and waits until it says where it listens (and that it honours `--io`). */
  static async start(args: readonly string[], limits: ProcessLimits = {}): Promise<ServerProcess> {
    const server = new ServerProcess(args, limits);
    try {
      const { line, match } = await server.stderr.waitFor(LISTENING, 0, START_DEADLINE_MS);
      server.startLine = line;
      const io = args.indexOf("--io");
      if (io >= 0) {
        assert.match(line, new RegExp(`\\bio"?[=:]"?${args[io + 1]}\\b`), "--io is honoured");
      }
      server.tls = match[1] !== undefined;
      server.hostname = match[2];
      server.port = Number(match[3]);
      return server;
    } catch (error) {
      await server[Symbol.asyncDispose]();
      throw error;
    }
  }

  /**
   * Connects a plain {@linkcode WireClient} to where the server listens,
   * whose reads throw on a reset: the tests of a server process tell a
   * clean end from a reset by catching it.
   */
  connect(): Promise<WireClient<Deno.TcpConn>> {
    return WireClient.connect(this.port, { hostname: this.hostname, resets: "throw" });
  }
}

/** Runs the server until it exits by itself, as for a bad command line, book or certificate. */
export async function runServerToExit(args: readonly string[]): Promise<ProcessOutput> {
  await using server = new ServerProcess(args);
  return await server.output();
}

/** Runs `client.ts` as `deno task client` would, with `args`, to its exit. */
export async function runClientToExit(args: readonly string[]): Promise<ProcessOutput> {
  await using client = new Subprocess([...CLIENT_FLAGS, ...args]);
  return await client.output();
}
