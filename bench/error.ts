/**
 * The load generator's one error class for a run that could not be done.
 *
 * @module
 */

/** A run that could not be done (unreachable target, server that would not start...); exit 1. */
export class BenchError extends Error {
  /** Makes the error from a one-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "BenchError";
  }
}
