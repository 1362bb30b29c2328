/**
 * Loads a book in a worker thread, so that a reload of even a very large
 * book never stops the main thread: signals, metrics and the serving
 * threads' reports go on being handled while the file is parsed. The book
 * comes back as its shared buffers (no copy) and is rebuilt here with
 * {@linkcode AddressBook.fromShared}; a {@linkcode BookError} comes back
 * with its problems intact.
 *
 * ```ts
 * import { loadBookInThread } from "./load_thread.ts";
 *
 * const { book, entries } = await loadBookInThread("data/addressbook.csv");
 * book.get("ada@example.com"); // "Ada Lovelace"
 * ```
 *
 * @module
 */

import { AddressBook } from "./addressbook.ts";
import { TextIndex } from "./text_index.ts";
import { BookError } from "./problem.ts";
import { canOpenDescriptors } from "../common/descriptors.ts";
import type { LoadedBook, LoadOptions } from "./load.ts";
import type { LoadReply, LoadRequest } from "./load_worker.ts";

const WORKER_URL = new URL("./load_worker.ts", import.meta.url);

/** How {@linkcode loadBookInThread} loads. */
export interface ThreadLoadOptions extends LoadOptions {
  /**
   * Build the book's substring index in the loading thread too, and attach
   * it to the book ({@linkcode TextIndex.of} then finds it).
   */
  textIndex?: boolean;
}

/**
 * File descriptors a loading thread needs, with room to spare: its runtime
 * (an event loop, a few pipes), each module it imports and the book itself.
 * Deno panics, ending the whole process, when a new thread gets too few.
 */
export const THREAD_DESCRIPTORS = 32;

/** Refused before any thread starts: too few file descriptors are free for one. */
export class ThreadRefusedError extends Error {
  override name = "ThreadRefusedError";
}

/**
 * As `loadBook` from `book/load.ts`, but the reading and checking run in a
 * worker thread that is ended afterwards, with all the garbage of parsing.
 *
 * @throws {BookError} listing every problem with the file, as `loadBook` does.
 * @throws {ThreadRefusedError} when too few file descriptors are free to start the thread.
 * @throws {Error} when the thread itself fails (not about the file's content).
 */
export function loadBookInThread(
  path: string,
  options: ThreadLoadOptions = {},
): Promise<LoadedBook> {
  if (canOpenDescriptors(THREAD_DESCRIPTORS) === false) {
    return Promise.reject(
      new ThreadRefusedError(
        `Cannot start the book loading thread: fewer than the ${THREAD_DESCRIPTORS} file descriptors it needs are free (raise ulimit -n, or wait for connections to close).`,
      ),
    );
  }
  const worker = new Worker(WORKER_URL, { type: "module" });
  return new Promise<LoadedBook>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<LoadReply>) => {
      worker.terminate();
      const reply = event.data;
      if (reply.kind === "loaded") {
        const { entries, duplicates, format } = reply;
        const book = AddressBook.fromShared(reply.book);
        if (reply.textIndex) TextIndex.attach(book, TextIndex.fromShared(reply.textIndex));
        resolve({ book, entries, duplicates, format });
      } else if (reply.kind === "refused") {
        reject(new BookError(reply.problems));
      } else {
        reject(new Error(`The book loading thread failed: ${reply.message}`));
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(`The book loading thread failed: ${event.message}`));
    };
    const { textIndex, ...loadOptions } = options;
    const request: LoadRequest = { path, options: loadOptions, textIndex };
    worker.postMessage(request);
  });
}
