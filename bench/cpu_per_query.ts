/**
 * CPU time per query at c50 P16 of this server (or several checkouts of
 * it), Redis and the floor server side by side: the figure issue 18 sets
 * its goal in. Throughput on a shared two-core machine swings with what
 * else the host runs; the server's own CPU time per query (user + system
 * from `/proc/PID/stat` around a run, divided by the queries answered) is
 * steadier, and interleaved rounds let the swings hit every server alike.
 *
 * Writes the book and keys `compare-redis.py` uses (100,000 entries
 * `userN@example.com`, "User Number N"; every seventh of 200,000 addresses
 * asked, half of them found), starts each checkout's `deno task server`, a
 * Redis loaded with the same entries and `floor_server.c` (a C server that
 * answers a fixed reply and looks nothing up), then runs `qrload -c 50 -P
 * 16` against each in turn, round after round.
 *
 * ```sh
 * gcc -O2 -o /tmp/qrload ../shared/tools/qrload.c -lssl -lcrypto
 * gcc -O2 -o /tmp/floor ../shared/tools/floor_server.c
 * deno run -A bench/cpu_per_query.ts --qrload /tmp/qrload --floor /tmp/floor
 * deno run -A bench/cpu_per_query.ts --qrload /tmp/qrload --floor /tmp/floor /tmp/before .
 * ```
 *
 * `--floor` names a C server of the binary protocol, its path maybe followed
 * by arguments (the port is added last); given more than once, each runs in
 * the same rounds, named by its command, as `bench/io_floor.c`'s two loops
 * are compared:
 *
 * ```sh
 * gcc -O2 -o /tmp/io_floor bench/io_floor.c -luring
 * deno run -A bench/cpu_per_query.ts --qrload /tmp/qrload --floor /tmp/floor \
 *   --floor "/tmp/io_floor epoll" --floor "/tmp/io_floor uring"
 * ```
 *
 * Prints a line per round (CPU per query of each server, its user part, and
 * each one's ratio to Redis's) and the medians. Not a test: it asserts
 * nothing.
 *
 * `--paired` compares checkouts with one another only (no Redis, no floor,
 * `--floor` not needed): each round runs them in turn, in alternating
 * order, and the ratios are each one's CPU and user time per query to the
 * first checkout's in the same round, with their median and quartiles. Two
 * runs a second apart see much the same machine, which rounds that also
 * run Redis and the floor between them do not.
 *
 * ```sh
 * deno run -A bench/cpu_per_query.ts --qrload /tmp/qrload --paired --rounds 30 --seconds 1 /tmp/before .
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const args = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    qrload: { type: "string" },
    floor: { type: "string", multiple: true },
    paired: { type: "boolean", default: false },
    rounds: { type: "string", default: "10" },
    seconds: { type: "string", default: "2" },
  },
});
const paired = args.values.paired;
if (
  args.values.qrload === undefined || (!paired && (args.values.floor ?? []).length === 0) ||
  (paired && args.positionals.length < 2)
) {
  console.error(
    "Usage: bench/cpu_per_query.ts --qrload PATH --floor CMD [--floor CMD ...] [--rounds N] [--seconds S] [REPO_DIR ...]\n" +
      "       bench/cpu_per_query.ts --qrload PATH --paired [--rounds N] [--seconds S] REPO_DIR REPO_DIR ...",
  );
  Deno.exit(2);
}
const qrload = args.values.qrload;
const floors = args.values.floor ?? [];
const rounds = Number(args.values.rounds);
const seconds = Number(args.values.seconds);
const repos = args.positionals.length > 0 ? args.positionals : ["."];

const dir = await Deno.makeTempDir({ prefix: "cpu_per_query_" });
const bookPath = `${dir}/book.csv`;
const keysPath = `${dir}/keys.txt`;
const ENTRIES = 100_000;
const lines = ["email,name"];
for (let i = 0; i < ENTRIES; i++) lines.push(`user${i}@example.com,User Number ${i}`);
await Deno.writeTextFile(bookPath, lines.join("\n") + "\n");
const keys: string[] = [];
for (let i = 0; i < 2 * ENTRIES; i += 7) keys.push(`user${i}@example.com`);
await Deno.writeTextFile(keysPath, keys.join("\n") + "\n");

interface Server {
  name: string;
  pid: number;
  port: number;
  mode: "qr" | "resp";
  process: Deno.ChildProcess;
}

const servers: Server[] = [];
try {
  let port = 7900 + Math.floor(Math.random() * 500);
  for (const repo of repos) servers.push(await startProject(repo, port++));
  if (paired) {
    for (const server of servers) await load(server, 1); // warm up
    await comparePairs();
  } else {
    servers.push(await startRedis(port++));
    for (const command of floors) servers.push(startFloor(command, port++));
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const server of servers) await load(server, 1); // warm up
    await compareWithRedis();
  }
} finally {
  for (const server of servers) {
    try {
      server.process.kill("SIGTERM");
      await server.process.status;
    } catch {
      // gone already
    }
  }
  await Deno.remove(dir, { recursive: true });
}

/** Rounds of every server in turn; each one's CPU per query against Redis's in the same round. */
async function compareWithRedis(): Promise<void> {
  const ratios = servers.map(() => [] as number[]);
  const redis = servers.findIndex((server) => server.name === "redis");
  for (let round = 1; round <= rounds; round++) {
    const cpu: { total: number; user: number }[] = [];
    for (const server of servers) cpu.push(await cpuPerQuery(server));
    const parts = servers.map((server, i) =>
      `${server.name} ${cpu[i].total.toFixed(0)} ns (user ${cpu[i].user.toFixed(0)})`
    );
    servers.forEach((_, i) => ratios[i].push(cpu[i].total / cpu[redis].total));
    const shown = servers.map((server, i) =>
      `${server.name} ${(cpu[i].total / cpu[redis].total).toFixed(3)}`
    );
    console.log(`round ${round}: ${parts.join(", ")} | / redis: ${shown.join(" ")}`);
  }
  console.log(
    `median CPU per query / Redis's: ${
      servers.map((s, i) => `${s.name} ${median(ratios[i]).toFixed(3)}`).join(", ")
    }`,
  );
}

/**
 * Rounds of the checkouts in turn, in alternating order; each one's CPU
 * and user time per query against the first's in the same round.
 */
async function comparePairs(): Promise<void> {
  const ratios = servers.map(() => ({ total: [] as number[], user: [] as number[] }));
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? servers : [...servers].reverse();
    const cpu = new Map<Server, { total: number; user: number }>();
    for (const server of order) cpu.set(server, await cpuPerQuery(server));
    const first = cpu.get(servers[0])!;
    const parts = servers.map((server) => {
      const { total, user } = cpu.get(server)!;
      return `${server.name} ${total.toFixed(0)} ns (user ${user.toFixed(0)})`;
    });
    servers.forEach((server, i) => {
      ratios[i].total.push(cpu.get(server)!.total / first.total);
      ratios[i].user.push(cpu.get(server)!.user / first.user);
    });
    console.log(`round ${round}: ${parts.join(", ")}`);
  }
  for (let i = 1; i < servers.length; i++) {
    const { total, user } = ratios[i];
    console.log(
      `${servers[i].name} / ${servers[0].name}, per round: CPU per query median ${
        median(total).toFixed(3)
      } (quartiles ${quantile(total, 0.25).toFixed(3)}–${quantile(total, 0.75).toFixed(3)}), ` +
        `user median ${median(user).toFixed(3)}`,
    );
  }
}

async function startProject(repo: string, port: number): Promise<Server> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["task", "server", "--port", String(port), "--data", bookPath],
    cwd: repo,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // The start line names the server's own process (deno task runs it as a child).
  const reader = process.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`The server in ${repo} ended before it listened: ${seen}`);
    seen += value;
    const pid = /listening on .* pid=(\d+)/.exec(seen)?.[1];
    if (pid !== undefined) {
      reader.releaseLock();
      process.stderr.pipeTo(new WritableStream()).catch(() => {});
      return { name: repo === "." ? "this" : repo, pid: Number(pid), port, mode: "qr", process };
    }
  }
}

/**
 * Starts a C server of the binary protocol from `command`: a path, maybe
 * followed by arguments, to which the port is added last. It is named
 * "floor" when it is the only one, else by its command's words.
 */
function startFloor(command: string, port: number): Server {
  const [path, ...words] = command.split(/\s+/).filter((word) => word !== "");
  const process = new Deno.Command(path, { args: [...words, String(port)], stdout: "null" })
    .spawn();
  const name = floors.length === 1 ? "floor" : [path.split("/").pop(), ...words].join(" ");
  return { name, pid: process.pid, port, mode: "qr", process };
}

async function startRedis(port: number): Promise<Server> {
  const process = new Deno.Command("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stdin: "null",
  }).spawn();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const commands = [];
  for (let i = 0; i < ENTRIES; i++) commands.push(`SET user${i}@example.com "User Number ${i}"`);
  const cli = new Deno.Command("redis-cli", {
    args: ["-p", String(port)],
    stdin: "piped",
    stdout: "null",
  })
    .spawn();
  const writer = cli.stdin.getWriter();
  await writer.write(new TextEncoder().encode(commands.join("\n") + "\n"));
  await writer.close();
  await cli.status;
  return { name: "redis", pid: process.pid, port, mode: "resp", process };
}

/** Runs qrload at c50 P16 for `duration` seconds; returns the queries answered. */
async function load(server: Server, duration: number): Promise<number> {
  const { stdout } = await new Deno.Command(qrload, {
    args: [
      "-m",
      server.mode,
      "-p",
      String(server.port),
      "-k",
      keysPath,
      "-d",
      String(duration),
      "-c",
      "50",
      "-P",
      "16",
    ],
  }).output();
  const line = new TextDecoder().decode(stdout);
  const found = /found=(\d+) notfound=(\d+)/.exec(line);
  if (found === null) throw new Error(`qrload said: ${line}`);
  return Number(found[1]) + Number(found[2]);
}

async function cpuPerQuery(server: Server): Promise<{ total: number; user: number }> {
  const before = await cpuTicks(server.pid);
  const queries = await load(server, seconds);
  const after = await cpuTicks(server.pid);
  const nsPerTick = 1e9 / 100; // USER_HZ
  return {
    total: ((after.user - before.user + after.system - before.system) * nsPerTick) / queries,
    user: ((after.user - before.user) * nsPerTick) / queries,
  };
}

async function cpuTicks(pid: number): Promise<{ user: number; system: number }> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The value at fraction `at` of the sorted values (0: the least, 1: the greatest). */
function quantile(values: number[], at: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round(at * (sorted.length - 1))];
}
