import assert from "node:assert/strict";

/** Runs resolveUserPath in a subprocess with the given environment and permissions. */
async function resolveIn(path: string, env: Record<string, string>, allowEnv: boolean) {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/resolve.ts`;
    await Deno.writeTextFile(
      script,
      `import { resolveUserPath } from "${import.meta.dirname}/user_path.ts";
      console.log(resolveUserPath(${JSON.stringify(path)}));`,
    );
    const { stdout, success } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...(allowEnv ? ["--allow-env=INIT_CWD"] : []), script],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(success);
    return new TextDecoder().decode(stdout).trim();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("resolveUserPath puts a relative path under the folder deno task was started in", async () => {
  assert.equal(
    await resolveIn("books/a.csv", { INIT_CWD: "/home/ada" }, true),
    "/home/ada/books/a.csv",
  );
  assert.equal(await resolveIn("a.csv", { INIT_CWD: "/home/ada/" }, true), "/home/ada/a.csv");
});

Deno.test("resolveUserPath leaves absolute paths, and paths outside deno task, as they are", async () => {
  assert.equal(await resolveIn("/etc/book.csv", { INIT_CWD: "/home/ada" }, true), "/etc/book.csv");
  assert.equal(await resolveIn("a.csv", {}, true), "a.csv");
});

Deno.test("resolveUserPath does not read INIT_CWD without the permission to", async () => {
  assert.equal(await resolveIn("a.csv", { INIT_CWD: "/home/ada" }, false), "a.csv");
});
