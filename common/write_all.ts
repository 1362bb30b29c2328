/**
 * Writing a whole buffer to a writer whose `write` may take only part of it
 * (a socket, a pipe, standard output).
 *
 * @module
 */

/** Anything with Deno's `write` contract: it may write fewer bytes than given. */
export interface PartialWriter {
  /** Writes some of `bytes` and resolves with how many were written. */
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes every byte of `bytes`, calling `write` again for what a call left.
 *
 * ```ts
 * import { writeAll } from "./write_all.ts";
 * await writeAll(Deno.stdout, new TextEncoder().encode("hello\n"));
 * ```
 */
export async function writeAll(writer: PartialWriter, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await writer.write(bytes.subarray(written));
}
