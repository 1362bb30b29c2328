/**
 * Watching the book's file for `--watch`.
 *
 * @module
 */

/** Changes to a watched book closer together than this are one change (editors write in steps). */
const WATCH_SETTLE_MS = 100;

/**
 * Calls `onChange` when the file at `path` is written, created or replaced.
 * It watches the file's folder rather than the file, because editors and
 * deploy tools often replace a file by renaming a new one over it.
 */
export function watchFile(path: string, onChange: () => void): Deno.FsWatcher {
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const folder = absolute.slice(0, absolute.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(folder, { recursive: false });
  let settle: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    for await (const event of watcher) {
      if (event.kind === "access" || !event.paths.includes(absolute)) continue;
      clearTimeout(settle);
      settle = setTimeout(onChange, WATCH_SETTLE_MS);
    }
    clearTimeout(settle);
  })();
  return watcher;
}
