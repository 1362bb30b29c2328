import assert from "node:assert/strict";
import {
  MAX_TIMER_MS,
  nearFlags,
  orList,
  parseChoice,
  parseFlags,
  parsePort,
  parseSeconds,
  parseWholeNumber,
  UsageError,
  usageLine,
} from "./cli_args.ts";

function assertUsage(run: () => unknown, pattern: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof UsageError);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("parseWholeNumber accepts the range's ends and refuses what lies outside or is not whole", () => {
  assert.equal(parseWholeNumber("--workers", "1", 1, 64), 1);
  assert.equal(parseWholeNumber("--workers", "64", 1, 64), 64);
  for (const bad of ["0", "65", "-1", "1.5", "", " 2", "0x10", "1e2"]) {
    assertUsage(
      () => parseWholeNumber("--workers", bad, 1, 64),
      new RegExp(
        `^--workers must be a whole number from 1 to 64, not "${bad.replace(".", "\\.")}"\\.$`,
      ),
    );
  }
});

Deno.test("parsePort takes 0 to 65535 by default and a higher floor when asked", () => {
  assert.equal(parsePort("--port", "0"), 0);
  assert.equal(parsePort("--port", "65535"), 65535);
  assertUsage(() => parsePort("--port", "-1"), /from 0 to 65535, not "-1"/);
  assertUsage(() => parsePort("--port", "0", 1), /from 1 to 65535, not "0"/);
});

Deno.test("parseSeconds keeps milliseconds exactly and refuses values it would round or overflow", () => {
  assert.equal(parseSeconds("--t", "2.5"), 2500);
  assert.equal(parseSeconds("--t", "0.001"), 1);
  assert.equal(parseSeconds("--t", "0", { zero: true }), 0);
  assert.equal(parseSeconds("--t", "7.25", { maxSeconds: 10 }), 7250);
  assert.equal(parseSeconds("--t", String(Math.floor(MAX_TIMER_MS / 1000))), 2_147_483_000);
  assertUsage(
    () => parseSeconds("--t", "0.0004", { zero: true }),
    /from 0 to \d+ with at most 3 decimals, not "0\.0004"/,
  );
  assertUsage(() => parseSeconds("--t", "0"), /from 0\.001 to/);
  assertUsage(() => parseSeconds("--t", "3000000"), /not "3000000"/);
  assertUsage(() => parseSeconds("--t", "11", { maxSeconds: 10 }), /to 10 with/);
  for (const bad of ["-1", "1e3", "", ".5", "1.", "abc"]) {
    assertUsage(() => parseSeconds("--t", bad, { zero: true }), /must be a number of seconds/);
  }
});

Deno.test("parseChoice passes an absent flag through and refuses a value outside the choices", () => {
  assert.equal(parseChoice("--io", undefined, ["epoll", "deno"]), undefined);
  assert.equal(parseChoice("--io", "deno", ["epoll", "deno"]), "deno");
  assertUsage(
    () => parseChoice("--io", "kqueue", ["epoll", "deno"]),
    /^--io must be one of epoll, deno, not "kqueue"\.$/,
  );
});

Deno.test("orList joins choices as a help text lists them", () => {
  assert.equal(orList(["csv", "json", "vcard"]), "csv, json or vcard");
  assert.equal(orList(["text", "json"]), "text or json");
  assert.equal(orList(["text"]), "text");
  assert.equal(orList([]), "");
});

const FLAGS = {
  port: { type: "string" },
  timeout: { type: "string" },
  tls: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

Deno.test("parseFlags reads flags and positionals, a dashed value as the flag's own", () => {
  const { values, positionals } = parseFlags({
    args: ["--port", "-1", "--tls", "a@b.c", "-h"],
    options: FLAGS,
    allowPositionals: true,
  });
  assert.equal(values.port, "-1");
  assert.equal(values.tls, true);
  assert.equal(values.help, true);
  assert.deepEqual(positionals, ["a@b.c"]);
});

Deno.test("parseFlags refuses each mistake in one sentence, with a did-you-mean for a near miss", () => {
  const refused = (args: string[], message: string, allowPositionals = false) =>
    assertUsage(
      () => parseFlags({ args, options: FLAGS, allowPositionals }),
      new RegExp(`^${RegExp.escape(message)}$`),
    );
  refused(["--prot", "1"], "Unknown option --prot: did you mean --port?");
  refused(["--tmeout", "1"], "Unknown option --tmeout: did you mean --timeout?");
  refused(["--time"], "Unknown option --time: did you mean --timeout?");
  refused(["-port"], "Unknown option -port: did you mean --port?");
  refused(["--bogus"], "Unknown option --bogus.");
  refused(["-x"], "Unknown option -x.");
  refused(["--tls=yes"], '--tls takes no value, not "yes".');
  refused(["--port"], "--port needs a value.");
  refused(
    ["--port", "--tls"],
    '--port needs a value, not the option "--tls" (write --port=--tls to mean it).',
  );
  refused(["stray"], 'Unexpected argument "stray": only options are taken.');
  // After "--" everything is a positional, dashes and all.
  const { positionals } = parseFlags({
    args: ["--", "--prot"],
    options: FLAGS,
    allowPositionals: true,
  });
  assert.deepEqual(positionals, ["--prot"]);
});

Deno.test("nearFlags suggests prefixes first, then flags within two edits, not everything for a short name", () => {
  const flags = ["port", "host", "timeout", "tls", "max-connections", "max-connections-per-client"];
  assert.deepEqual(nearFlags("prot", flags), ["port"]);
  assert.deepEqual(nearFlags("tim", flags), ["timeout"]);
  assert.deepEqual(nearFlags("port", flags), ["port"]);
  assert.deepEqual(nearFlags("max-connection", flags), [
    "max-connections",
    "max-connections-per-client",
  ]);
  assert.deepEqual(nearFlags("x", flags), []);
  assert.deepEqual(nearFlags("verbose", flags), []);
});

Deno.test("usageLine is the command, the message and see --help, on one line", () => {
  assert.equal(
    usageLine("client", "Unknown option --prot: did you mean --port?"),
    "client: Unknown option --prot: did you mean --port? See --help.",
  );
});
