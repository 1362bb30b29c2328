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
 * As `loadBook` from `book/load.ts`, but the reading and checking run in a
 * worker thread that is ended afterwards, with all the garbage of parsing.
 *
 * @throws {BookError} listing every problem with the file, as `loadBook` does.
 * @throws {Error} when the thread itself fails (not about the file's content).
 */
export function loadBookInThread(
  path: string,
  options: ThreadLoadOptions = {},
): Promise<LoadedBook> {
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
