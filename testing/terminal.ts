/**
 * A command run on a real pseudo-terminal, for tests of what a user types
 * at a prompt (arrow keys, Ctrl-D): Deno cannot open one, so python3's
 * `pty` module does, and plays a script of keys, each sent once the
 * terminal has shown what the step waits for.
 *
 * ```ts ignore
 * import { runInTerminal } from "./terminal.ts";
 *
 * const { output, code } = await runInTerminal([Deno.execPath(), "run", "client.ts"], [
 *   { waitFor: "addrbook> ", send: "ada@example.com\r" },
 *   { waitFor: "addrbook> ", send: "\x04" },
 * ]);
 * ```
 *
 * @module
 */

import { START_DEADLINE_MS, withDeadline } from "./deadlines.ts";
import { REPO_DIR } from "./repo.ts";

/** One step of a terminal session: wait until the screen shows `waitFor`, then type `send`. */
export interface TerminalStep {
  /** Text the terminal must have shown (after the previous step's) before `send` is typed. */
  waitFor: string;
  /** The keys to type: `\r` is Enter, `\x1b[A` the up arrow, `\x04` Ctrl-D. */
  send: string;
}

/** What a terminal session showed, and how the command ended. */
export interface TerminalRun {
  /** Everything the terminal showed, escape sequences included. */
  output: string;
  /** The command's exit code. */
  code: number;
}

/**
 * The driver: forks the command on a pty, plays the steps from its stdin
 * (JSON), and prints what the terminal showed and the exit code as JSON.
 * Every wait is bounded; a step that never shows is reported, not hung on.
 */
const DRIVER = String.raw`
import json, os, pty, select, sys, time
spec = json.load(sys.stdin)
pid, fd = pty.fork()
if pid == 0:
    os.execv(spec["command"][0], spec["command"])
out = b""
def read_until(text, start, deadline):
    global out
    while out.find(text, start) < 0:
        left = deadline - time.time()
        if left <= 0:
            return -1
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return -1
            if not data:
                return -1
            out += data
    return out.find(text, start) + len(text)
position = 0
failed = None
for step in spec["steps"]:
    position = read_until(step["waitFor"].encode(), position, time.time() + spec["stepSeconds"])
    if position < 0:
        failed = step["waitFor"]
        break
    os.write(fd, step["send"].encode())
if failed is not None:
    os.kill(pid, 9)
read_until(b"\0never\0", len(out), time.time() + spec["stepSeconds"])
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"output": out.decode("utf-8", "replace"), "code": code, "failed": failed}))
`;

/**
 * Runs `command` on a pseudo-terminal in {@linkcode REPO_DIR}, typing each
 * step's keys once the terminal shows its text, until the command exits.
 *
 * @throws {Error} when python3 is missing, or a step's text never shows.
 */
export async function runInTerminal(
  command: readonly string[],
  steps: readonly TerminalStep[],
  stepDeadlineMs = START_DEADLINE_MS,
): Promise<TerminalRun> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("python3", {
      args: ["-c", DRIVER],
      cwd: REPO_DIR,
      env: { NO_COLOR: "1", TERM: "xterm" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "The terminal tests need python3 on PATH (for its pty module) and it was not found.",
      );
    }
    throw error;
  }
  const writer = child.stdin.getWriter();
  await writer.write(
    new TextEncoder().encode(
      JSON.stringify({ command, steps, stepSeconds: stepDeadlineMs / 1000 }),
    ),
  );
  await writer.close();
  const { code, stdout, stderr } = await withDeadline(
    child.output(),
    "the terminal session to end",
    stepDeadlineMs * (steps.length + 2),
    () => child.kill("SIGKILL"),
  );
  const decoder = new TextDecoder();
  if (code !== 0) throw new Error(`The pty driver failed: ${decoder.decode(stderr)}`);
  const result = JSON.parse(decoder.decode(stdout));
  if (result.failed !== null) {
    throw new Error(
      `The terminal never showed ${JSON.stringify(result.failed)}; it showed: ${
        JSON.stringify(result.output)
      }`,
    );
  }
  return { output: result.output, code: result.code };
}
