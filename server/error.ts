/**
 * The server's expected failures: what the process says and the exit code
 * it leaves with. Every layer of the server may throw it, the serving
 * threads too, so it imports nothing.
 *
 * @module
 */

/** Exit code for a failure the operator can fix: a bad book, a busy port, unreadable TLS files. */
export const EXIT_FAILURE = 1;

/** Exit code for a bad command line. */
export const EXIT_USAGE = 2;

/**
 * The process's answer to a failure it expects, with the exit code to leave with.
 *
 * ```ts
 * import { EXIT_USAGE, StartError } from "./error.ts";
 * throw new StartError("--tls-cert and --tls-key go together: give both or neither.", EXIT_USAGE);
 * ```
 */
export class StartError extends Error {
  /** The exit code: 1 for a bad book or a busy port, 2 for bad usage. */
  readonly exitCode: number;

  /** Creates the error with a one-sentence message. */
  constructor(message: string, exitCode: number = EXIT_FAILURE) {
    super(message);
    this.name = "StartError";
    this.exitCode = exitCode;
  }
}
