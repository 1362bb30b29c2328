/**
 * The thread that `book/load_thread.ts` starts for one load: it gets the
 * path and options, runs {@linkcode loadBook}, posts back the built book's
 * shared buffers (not a copy), with its substring index's when asked, or
 * the problems, and is then ended. All the
 * garbage of parsing stays in this thread's heap, which goes with it.
 *
 * @module
 */

import type { SharedAddressBook } from "./addressbook.ts";
import { type SharedTextIndex, TextIndex } from "./text_index.ts";
import type { BookFormat } from "./format.ts";
import { BookError, type BookProblem } from "./problem.ts";
import { describeError } from "../common/errors.ts";
import { loadBook, type LoadOptions } from "./load.ts";

/** What the main thread asks for. */
export interface LoadRequest {
  /** The file to load. */
  path: string;
  /** How to load it. */
  options: LoadOptions;
  /** Whether to build the book's substring index too (LDAP is served). */
  textIndex?: boolean;
}

/** What the thread answers. */
export type LoadReply =
  | {
    kind: "loaded";
    /** The book's shared buffers. */
    book: SharedAddressBook;
    /** Its substring index's, when asked for. */
    textIndex?: SharedTextIndex;
    /** How many entries it holds. */
    entries: number;
    /** Entries dropped as duplicates. */
    duplicates: number;
    /** The format the file was read as. */
    format: BookFormat;
  }
  | {
    kind: "refused";
    /** Everything wrong with the file. */
    problems: BookProblem[];
  }
  | {
    kind: "failed";
    /** What went wrong that was not about the file's content. */
    message: string;
  };

/** The worker's global scope, typed here so this module can be checked with the main-thread lib. */
const scope = self as unknown as {
  postMessage(message: LoadReply): void;
  onmessage: ((event: MessageEvent<LoadRequest>) => void) | null;
};

async function answer(request: LoadRequest): Promise<LoadReply> {
  try {
    const { book, entries, duplicates, format } = await loadBook(request.path, request.options);
    // Built here, once, rather than by every serving thread: it stalls none of them.
    const textIndex = request.textIndex ? TextIndex.build(book).toShared() : undefined;
    return { kind: "loaded", book: book.toShared(), textIndex, entries, duplicates, format };
  } catch (error) {
    if (error instanceof BookError) return { kind: "refused", problems: error.problems };
    return { kind: "failed", message: describeError(error) };
  }
}

scope.onmessage = async (event) => {
  scope.postMessage(await answer(event.data));
};
