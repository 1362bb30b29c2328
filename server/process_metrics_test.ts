import assert from "node:assert/strict";
import {
  parseBootTime,
  parseMaxOpenFiles,
  parseProcStat,
  readProcessFigures,
  USER_HZ,
} from "./process_metrics.ts";

/** A real /proc/PID/stat line, its command name holding a space and parentheses. */
const STAT_LINE = "7761 (deno (main) x) S 7756 7756 29969 0 -1 4194304 100 0 0 0 " +
  "250 37 0 0 20 0 9 0 958096 3133440 388 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0\n";

Deno.test("parseProcStat counts fields after the command's last parenthesis", () => {
  assert.deepEqual(parseProcStat(STAT_LINE), { cpuTicks: 250 + 37, startTicks: 958096 });
  assert.throws(() => parseProcStat("7761 (deno) S 1 2"), {
    name: "RangeError",
    message: "Cannot read /proc/self/stat: field 14 is not a number.",
  });
});

Deno.test("parseBootTime reads /proc/stat's btime line", () => {
  assert.equal(parseBootTime("cpu  1 2 3\nintr 5\nbtime 1796592188\nprocesses 9\n"), 1796592188);
  assert.throws(() => parseBootTime("cpu 1 2 3\n"), RangeError);
});

Deno.test("parseMaxOpenFiles reads the soft limit, and unlimited as Infinity", () => {
  const limits = (soft: string) =>
    "Limit                     Soft Limit           Hard Limit           Units     \n" +
    "Max processes             96367                96367                processes \n" +
    `Max open files            ${soft.padEnd(20)} 1048576              files     \n`;
  assert.equal(parseMaxOpenFiles(limits("1024")), 1024);
  assert.equal(parseMaxOpenFiles(limits("unlimited")), Infinity);
  assert.throws(() => parseMaxOpenFiles("Limit Soft Hard\n"), RangeError);
});

Deno.test({
  name: "readProcessFigures gives plausible figures for this process",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const figures = readProcessFigures()!;
    // ps says how long ago this process started, in whole seconds.
    const ps = await new Deno.Command("ps", {
      args: ["-o", "etimes=", "-p", String(Deno.pid)],
      stdout: "piped",
    }).output();
    const startedByPs = Date.now() / 1000 - Number(new TextDecoder().decode(ps.stdout));
    assert.ok(
      Math.abs(figures.startTimeSeconds - startedByPs) < 2,
      `started at ${figures.startTimeSeconds}, by ps at ${startedByPs}`,
    );
    assert.ok(
      figures.residentMemoryBytes > 10 * 2 ** 20 && figures.residentMemoryBytes < 16 * 2 ** 30,
      `resident memory ${figures.residentMemoryBytes}`,
    );
    // ulimit -n, as a shell started by this process sees it (it inherits the limit).
    const ulimit = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" })
      .output();
    const limit = new TextDecoder().decode(ulimit.stdout).trim();
    assert.equal(figures.maxFds, limit === "unlimited" ? Infinity : Number(limit));
  },
});

Deno.test({
  name: "readProcessFigures counts descriptors as they open and close, and CPU time as it is spent",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const before = readProcessFigures()!;
    const listeners = Array.from(
      { length: 5 },
      () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    );
    const open = readProcessFigures()!;
    for (const listener of listeners) listener.close();
    const closed = readProcessFigures()!;
    assert.equal(open.openFds, before.openFds + 5);
    assert.equal(closed.openFds, before.openFds);

    // Spin until the kernel has counted at least two ticks more (bounded in time).
    const deadline = Date.now() + 5000;
    let after = readProcessFigures()!;
    while (after.cpuSeconds < closed.cpuSeconds + 2 / USER_HZ && Date.now() < deadline) {
      after = readProcessFigures()!;
    }
    assert.ok(after.cpuSeconds >= closed.cpuSeconds + 2 / USER_HZ, "CPU seconds grow");
  },
});
