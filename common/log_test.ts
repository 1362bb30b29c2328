import assert from "node:assert/strict";
import { formatLine, Logger, type LogLevel } from "./log.ts";

const TIME = new Date("2026-11-24T10:00:00.000Z");
const LEVELS: LogLevel[] = ["debug", "info", "warn", "error"];

/** A logger whose lines are collected in an array instead of written to stderr. */
function collectingLogger(options: { format?: "text" | "json"; level?: LogLevel } = {}) {
  const lines: string[] = [];
  const log = new Logger({ ...options, write: (line) => lines.push(line) });
  return { log, lines };
}

function logAtEveryLevel(log: Logger): void {
  log.debug("debug event", { n: 1 });
  log.info("info event", { n: 2 });
  log.warn("warn event", { n: 3 });
  log.error("error event", { n: 4 });
}

// --- The text format ---

Deno.test("formatLine text: ISO time, level, message, then key=value fields in order", () => {
  assert.equal(
    formatLine("text", TIME, "info", "reload done", { entries: 50, file: "data/addressbook.csv" }),
    "2026-11-24T10:00:00.000Z info reload done entries=50 file=data/addressbook.csv",
  );
});

Deno.test("formatLine text: a line without fields is time, level and message", () => {
  assert.equal(
    formatLine("text", TIME, "warn", "shutting down", {}),
    "2026-11-24T10:00:00.000Z warn shutting down",
  );
});

Deno.test("formatLine text: numbers and booleans are written bare", () => {
  assert.equal(
    formatLine("text", TIME, "debug", "x", { port: 8080, ratio: 0.5, tls: true, busy: false }),
    "2026-11-24T10:00:00.000Z debug x port=8080 ratio=0.5 tls=true busy=false",
  );
});

Deno.test("formatLine text: quotes values with spaces, quotes, = or nothing in them", () => {
  const line = formatLine("text", TIME, "error", "reload failed", {
    error: "the file is not valid UTF-8",
    quote: 'say "hi"',
    equals: "a=b",
    empty: "",
    tab: "a\tb",
    plain: "127.0.0.1:8080",
  });
  assert.equal(
    line,
    '2026-11-24T10:00:00.000Z error reload failed error="the file is not valid UTF-8" ' +
      'quote="say \\"hi\\"" equals="a=b" empty="" tab="a\\tb" plain=127.0.0.1:8080',
  );
});

Deno.test("formatLine text: a quoted value reads back with JSON.parse", () => {
  const value = 'line one\nline "two" = three';
  const line = formatLine("text", TIME, "info", "m", { value });
  const quoted = line.slice(line.indexOf("value=") + "value=".length);
  assert.equal(JSON.parse(quoted), value);
});

Deno.test("formatLine text: a value with a newline stays on one line", () => {
  const line = formatLine("text", TIME, "error", "failed", { error: "first\nsecond\r\nthird" });
  assert.ok(!line.includes("\n") && !line.includes("\r"), line);
});

Deno.test("formatLine text: fields whose value is undefined are left out", () => {
  assert.equal(
    formatLine("text", TIME, "info", "listening", { workers: 2, metrics: undefined, tls: false }),
    "2026-11-24T10:00:00.000Z info listening workers=2 tls=false",
  );
});

// --- The JSON format ---

Deno.test("formatLine json: one JSON object with time, level, msg and the fields", () => {
  const line = formatLine("json", TIME, "info", "reload done", {
    entries: 50,
    file: "a b.csv",
    tls: true,
  });
  assert.ok(!line.includes("\n"));
  assert.deepEqual(JSON.parse(line), {
    time: "2026-11-24T10:00:00.000Z",
    level: "info",
    msg: "reload done",
    entries: 50,
    file: "a b.csv",
    tls: true,
  });
  // time, level and msg come first, for people reading the raw lines.
  assert.deepEqual(Object.keys(JSON.parse(line)).slice(0, 3), ["time", "level", "msg"]);
});

Deno.test("formatLine json: fields whose value is undefined are left out", () => {
  const parsed = JSON.parse(
    formatLine("json", TIME, "warn", "m", { peer: "1.2.3.4:5", metrics: undefined }),
  );
  assert.ok(!("metrics" in parsed));
  assert.equal(parsed.peer, "1.2.3.4:5");
});

Deno.test("formatLine json: escapes quotes, newlines and non-ASCII correctly", () => {
  const message = 'bad "line"\nnext';
  const line = formatLine("json", TIME, "error", message, { detail: "Zoë\u0000" });
  assert.ok(!line.includes("\n"));
  const parsed = JSON.parse(line);
  assert.equal(parsed.msg, message);
  assert.equal(parsed.detail, "Zoë\u0000");
});

// --- The logger ---

Deno.test("Logger writes info and above by default, in text", () => {
  const { log, lines } = collectingLogger();
  logAtEveryLevel(log);
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info info event n=2$/);
  assert.match(lines[1], / warn warn event n=3$/);
  assert.match(lines[2], / error error event n=4$/);
});

Deno.test("Logger at each level writes that level and the ones above it only", () => {
  for (const [rank, level] of LEVELS.entries()) {
    const { log, lines } = collectingLogger({ level });
    logAtEveryLevel(log);
    const written = lines.map((line) => line.split(" ")[1]);
    assert.deepEqual(written, LEVELS.slice(rank), `at level ${level}`);
    for (const other of LEVELS) {
      assert.equal(
        log.enabled(other),
        LEVELS.indexOf(other) >= rank,
        `${other} enabled at ${level}`,
      );
    }
  }
});

Deno.test("Logger in json writes one parseable object per event", () => {
  const { log, lines } = collectingLogger({ format: "json", level: "debug" });
  logAtEveryLevel(log);
  log.info("no fields");
  assert.equal(lines.length, 5);
  const parsed = lines.map((line) => JSON.parse(line));
  assert.deepEqual(parsed.map((p) => [p.level, p.msg, p.n]), [
    ["debug", "debug event", 1],
    ["info", "info event", 2],
    ["warn", "warn event", 3],
    ["error", "error event", 4],
    ["info", "no fields", undefined],
  ]);
  for (const p of parsed) assert.ok(!Number.isNaN(Date.parse(p.time)));
});

Deno.test("Logger stamps each line with the current time", () => {
  const { log, lines } = collectingLogger({ format: "json" });
  const before = Date.now();
  log.info("now");
  const after = Date.now();
  const stamped = Date.parse(JSON.parse(lines[0]).time);
  assert.ok(stamped >= before && stamped <= after);
});

Deno.test("Logger writes to stderr by default, one line per event", async () => {
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { Logger } from ${JSON.stringify(new URL("./log.ts", import.meta.url).href)};
       const log = new Logger({ format: "json" });
       log.info("hello", { n: 1 });
       log.debug("hidden");
       log.warn("second");`,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  assert.equal(code, 0);
  assert.equal(new TextDecoder().decode(stdout), "");
  const lines = new TextDecoder().decode(stderr).split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[2], "");
  assert.deepEqual(lines.slice(0, 2).map((line) => JSON.parse(line).msg), ["hello", "second"]);
});
