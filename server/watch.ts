/**
 * Watching a file for `--watch` (the book, and each TLS file): a change is
 * reported once the file has settled, wherever the path leads.
 *
 * - **What is watched.** The path is followed as the kernel follows it:
 *   every folder that holds a link of its symlink chain (the typed path's
 *   own folder first) and the folder of the file it resolves to. So an
 *   edited symlink target, a path written with `//`, `./` or `../`, and a
 *   Kubernetes ConfigMap volume (`book.csv -> ..data/book.csv`, `..data ->
 *   ..2026_12_02_...`, updated by renaming a new `..data_tmp` symlink over
 *   `..data`) are all seen. The chain is resolved again after every change.
 * - **When a change counts.** Events only prompt a look at the file's
 *   {@linkcode fileSignature} (resolved path, inode, size, modification
 *   time). Once it differs from the file last handed over and then stays
 *   the same for the settle time, {@linkcode FileWatchOptions.onSettled}
 *   runs; a file still being written, in chunks with pauses shorter than
 *   that, is never handed over half-written.
 *
 * ```ts
 * import { FileWatch } from "./watch.ts";
 * const watch = FileWatch.start("book.csv", {
 *   settleMs: 1000,
 *   onSettled: async () => console.log("book.csv changed and settled"),
 * });
 * watch.close();
 * ```
 *
 * @module
 */

import { describeError } from "../common/errors.ts";

/** The most symlinks followed from the typed path, as Linux's own limit (ELOOP). */
const MAX_SYMLINK_HOPS = 40;

/**
 * How often a watch looks at the file whatever the events say, in
 * milliseconds. Events can stop for good: once a FIFO or a link to a device
 * is renamed into a watched folder, Deno's watcher thread stalls (seen with
 * Deno 2.9) and no watcher in the process hears of anything again. A look is
 * a realpath and a stat, so looking this often costs nothing.
 */
export const POLL_MS = 1000;

/** What {@linkcode fileSignature} says of a path that leads to no file. */
export const MISSING_FILE = "missing";

/**
 * A summary of the file `path` leads to now: the path it resolves to, its
 * inode, size and modification time (for a FIFO or a device, its path and
 * inode). Two equal signatures mean, as far as
 * the file system tells, the same file with the same content; a write, a
 * truncation, a rename over it, or a symlink pointed elsewhere changes it.
 * {@linkcode MISSING_FILE} when there is no such file, or it is a folder.
 */
export function fileSignature(path: string): string {
  try {
    const real = Deno.realPathSync(path);
    const info = Deno.statSync(real);
    if (info.isDirectory) return MISSING_FILE;
    // A FIFO or a device is handed over too, for the loader to refuse in words.
    if (!info.isFile) return JSON.stringify([real, info.ino, "not a regular file"]);
    return JSON.stringify([real, info.ino, info.size, info.mtime?.getTime()]);
  } catch {
    return MISSING_FILE;
  }
}

/**
 * The folders whose changes can change what `path` leads to: the folder of
 * each link of its symlink chain, and of the file at its end. Folders are
 * named by their real paths, so `//`, `./` and `../` do not matter.
 */
export function foldersToWatch(path: string): string[] {
  const folders = new Set<string>();
  let current = absolute(path);
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    const folder = realFolder(parentOf(current));
    if (folder === undefined) break;
    let link: string;
    try {
      const info = Deno.lstatSync(current);
      // The typed path's folder always; past it, not the folder of a device or
      // FIFO a link leads to (watching /dev needs --allow-all, and stalls the watch).
      if (hop === 0 || info.isSymlink || info.isFile) folders.add(folder);
      if (!info.isSymlink) break;
      link = Deno.readLinkSync(current);
    } catch {
      folders.add(folder); // nothing there yet: watched for it to appear
      break;
    }
    current = link.startsWith("/") ? link : `${folder}/${link}`;
  }
  try {
    // Only a regular file's folder: a link to /dev/zero must not have /dev watched.
    const real = Deno.realPathSync(path);
    if (Deno.statSync(real).isFile) folders.add(parentOf(real));
  } catch {
    // Nothing at the end of the chain yet: its folder is watched once it appears.
  }
  return [...folders];
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(0, trimmed.lastIndexOf("/")) || "/";
}

function realFolder(folder: string): string | undefined {
  try {
    return Deno.realPathSync(folder);
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode FileWatch.start}. */
export interface FileWatchOptions {
  /** How long the file must stay unchanged before it is handed over, in milliseconds. */
  settleMs: number;
  /**
   * Runs when the file has changed and settled; the next change is handed
   * over only after the promise settles. It should load and apply the file,
   * and report its own errors.
   */
  onSettled: () => Promise<void>;
  /**
   * Told, once per kind of trouble, when the watch cannot work as it
   * should (a folder that cannot be watched: the looks every
   * {@linkcode POLL_MS} still see changes); stderr by default.
   */
  onProblem?: (message: string) => void;
  /**
   * The signature of the file being served, taken before it was read; by
   * default the file's signature now. A file changed since then is handed
   * over once it settles.
   */
  servedSignature?: string;
}

/** A running watch on one file (the book, or a TLS file). */
export class FileWatch {
  readonly #path: string;
  readonly #options: FileWatchOptions;
  #watcher: Deno.FsWatcher | undefined;
  #folders = "";
  /** The signature last seen, and the one last handed over. */
  #seen: string;
  #served: string;
  #settleTimer: ReturnType<typeof setTimeout> | undefined;
  #lookPending = false;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  /** The last problem reported, so that one that persists is told once. */
  #lastProblem: string | undefined;
  #handingOver = false;
  #closed = false;

  private constructor(path: string, options: FileWatchOptions) {
    this.#path = path;
    this.#options = options;
    this.#served = options.servedSignature ?? fileSignature(path);
    this.#seen = this.#served;
  }

  /** Starts watching the file `path` leads to. */
  static start(path: string, options: FileWatchOptions): FileWatch {
    const watch = new FileWatch(path, options);
    watch.#rewatch();
    // The file may have changed between the read of the served one and now.
    watch.#look();
    watch.#pollTimer = setInterval(() => watch.#poke(), POLL_MS);
    return watch;
  }

  /** Stops watching; a change already settling is dropped. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#settleTimer);
    clearInterval(this.#pollTimer);
    this.#closeWatcher();
  }

  /** Watches the folders the path runs through now, when they differ from those watched. */
  #rewatch(): void {
    const folders = foldersToWatch(this.#path);
    const key = folders.join("\n");
    if (key === this.#folders && this.#watcher !== undefined) return;
    this.#closeWatcher();
    this.#folders = key;
    if (folders.length === 0) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(folders, { recursive: false });
    } catch (error) {
      // No permission for a folder (NotCapable), or no descriptor left: look now and then instead.
      this.#folders = "";
      this.#problem(
        `Cannot watch ${folders.join(", ")}: ${
          describeError(error)
        }; looking every ${POLL_MS} ms instead.`,
      );
      return;
    }
    this.#watcher = watcher;
    (async () => {
      try {
        for await (const event of watcher) {
          if (event.kind !== "access") this.#poke();
        }
      } catch {
        // A watched folder was deleted (the old ConfigMap folder): the next look rewatches.
        if (this.#watcher === watcher) this.#watcher = undefined;
        this.#poke();
      }
    })();
  }

  /** Reports a problem, unless it is the one reported last. */
  #problem(message: string): void {
    if (message === this.#lastProblem) return;
    this.#lastProblem = message;
    (this.#options.onProblem ?? console.error)(message);
  }

  #closeWatcher(): void {
    try {
      this.#watcher?.close();
    } catch {
      // Closed already.
    }
    this.#watcher = undefined;
  }

  /** Schedules one look at the file for a burst of events. */
  #poke(): void {
    if (this.#lookPending || this.#closed) return;
    this.#lookPending = true;
    setTimeout(() => {
      this.#lookPending = false;
      if (this.#closed) return;
      try {
        this.#look();
      } catch (error) {
        this.#problem(`Cannot look at ${this.#path}: ${describeError(error)}.`);
      }
    }, 0);
  }

  /** Notes a change of the file's signature, and starts its settle time again. */
  #look(): void {
    this.#rewatch();
    const signature = fileSignature(this.#path);
    if (signature === this.#seen) return;
    this.#seen = signature;
    this.#armSettleTimer();
  }

  #armSettleTimer(): void {
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => {
      this.#settled().catch((error) => {
        this.#problem(`Cannot hand ${this.#path} over: ${describeError(error)}.`);
      });
    }, this.#options.settleMs);
  }

  /** The settle time has passed since the last change seen: hand the file over if it held still. */
  async #settled(): Promise<void> {
    if (this.#closed) return;
    this.#rewatch();
    const signature = fileSignature(this.#path);
    if (signature !== this.#seen || this.#handingOver) {
      // Changed with no event seen yet, or the last change is still being loaded.
      this.#seen = signature;
      this.#armSettleTimer();
      return;
    }
    if (signature === this.#served || signature === MISSING_FILE) return;
    this.#served = signature;
    this.#handingOver = true;
    try {
      await this.#options.onSettled();
    } finally {
      this.#handingOver = false;
    }
  }
}
