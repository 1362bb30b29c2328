import assert from "node:assert/strict";
import { parseUnit, splitCommandLine } from "./systemd_unit.ts";

Deno.test("parseUnit reads sections, repeated keys, comments and continued lines", () => {
  const unit = parseUnit(
    "# a comment\n[Unit]\nDescription=a server\n\n[Service]\n; another\n" +
      "ExecStart=/bin/x \\\n    --flag 1\nSystemCallFilter=@system-service\nSystemCallFilter=~@mount\n",
  );
  assert.deepEqual(unit.get("Unit")?.get("Description"), ["a server"]);
  assert.deepEqual(unit.get("Service")?.get("ExecStart"), ["/bin/x      --flag 1"]);
  assert.deepEqual(unit.get("Service")?.get("SystemCallFilter"), ["@system-service", "~@mount"]);
  assert.throws(() => parseUnit("Key=outside\n"), SyntaxError);
});

Deno.test("splitCommandLine splits at spaces and keeps quoted and escaped ones", () => {
  assert.deepEqual(splitCommandLine(`/bin/x  -a "b c" 'd "e"' f\\ g ""`), [
    "/bin/x",
    "-a",
    "b c",
    'd "e"',
    "f g",
    "",
  ]);
  assert.throws(() => splitCommandLine(`/bin/x "open`), SyntaxError);
});
