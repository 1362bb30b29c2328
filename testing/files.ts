/**
 * Files for tests that touch the disk: temp dirs removed on disposal, and
 * a ConfigMap-style volume updated the way the kubelet does, for servers
 * that watch their files.
 *
 * ```ts
 * import { swapConfigMap, tempDir } from "./files.ts";
 *
 * await using dir = await tempDir("addrbook_example_");
 * await swapConfigMap(dir.path, "2024_01_01", { "book.csv": "email,name\n" });
 * ```
 *
 * @module
 */

/** Makes a temp dir, named with `prefix`, that is removed on disposal. */
export async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/**
 * Updates a ConfigMap-style volume as the kubelet does: the files go into a
 * new timestamped folder, a `..data_tmp` symlink to it is renamed over
 * `..data`, and the old folder is deleted. The first update also makes
 * `..data` and each file's link into it (`book.csv -> ..data/book.csv`).
 */
export async function swapConfigMap(
  volume: string,
  stamp: string,
  files: Record<string, string>,
): Promise<void> {
  const folder = `..${stamp}`;
  await Deno.mkdir(`${volume}/${folder}`);
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeTextFile(`${volume}/${folder}/${name}`, content);
  }
  let old: string | undefined;
  try {
    old = await Deno.readLink(`${volume}/..data`);
  } catch {
    // The first update: nothing to replace.
  }
  await Deno.symlink(folder, `${volume}/..data_tmp`);
  await Deno.rename(`${volume}/..data_tmp`, `${volume}/..data`);
  for (const name of Object.keys(files)) {
    try {
      await Deno.lstat(`${volume}/${name}`);
    } catch {
      await Deno.symlink(`..data/${name}`, `${volume}/${name}`);
    }
  }
  if (old !== undefined) await Deno.remove(`${volume}/${old}`, { recursive: true });
}
