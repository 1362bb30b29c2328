/**
 * HAProxy in front of replicas, as deploy/haproxy.cfg sets it up, on free
 * ports: the tested configuration with its ports and admin socket moved,
 * a real `haproxy` running it, and what HAProxy thinks of each replica.
 *
 * ```ts ignore
 * import { HaproxyProcess } from "./haproxy.ts";
 *
 * await using haproxy = await HaproxyProcess.start(dir.path);
 * haproxy.replicaPorts[0]; // where replica1 must listen
 * await haproxy.waitForState("replica1", /^UP L7OK$/); // its /readyz answered 200
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { writeAll } from "../common/write_all.ts";
import { START_DEADLINE_MS, waitFor, withDeadline } from "./deadlines.ts";
import { freePort } from "./loopback.ts";
import { LineCollector } from "./processes.ts";
import { REPO_DIR } from "./repo.ts";

/** The tested HAProxy configuration. */
export const HAPROXY_CONFIG = `${REPO_DIR}/deploy/haproxy.cfg`;

/** The ports deploy/haproxy.cfg names: its frontend, the replicas, their metrics ports, stats. */
export const HAPROXY_PORTS = {
  frontend: 8080,
  replicas: [8081, 8082, 8083],
  metrics: [9081, 9082, 9083],
  stats: 8404,
} as const;

/** The admin socket deploy/haproxy.cfg names. */
export const HAPROXY_STATS_SOCKET = "/tmp/addrbook-haproxy.sock";

/** The names deploy/haproxy.cfg gives the replicas, in the order of {@linkcode HAPROXY_PORTS}. */
export const REPLICA_NAMES: readonly string[] = ["replica1", "replica2", "replica3"];

/** Longer than HAProxy takes to mark a server up or down (2 checks 1 s apart, each up to 2 s). */
export const HAPROXY_HEALTH_DEADLINE_MS = 15_000;

/**
 * The config with every port its active lines name (`127.0.0.1:PORT`,
 * `check port PORT`) moved as `ports` says, and the admin socket moved to
 * `socket`; comments are left alone.
 */
export function relocateHaproxyConfig(
  config: string,
  ports: ReadonlyMap<number, number>,
  socket: string,
): string {
  return config.split("\n").map((line) => {
    if (line.trimStart().startsWith("#")) return line;
    return line
      .replace(/(127\.0\.0\.1:|check port )(\d+)/g, (_, prefix, port) => {
        const moved = ports.get(Number(port));
        assert.ok(moved !== undefined, `the test moves port ${port}`);
        return `${prefix}${moved}`;
      })
      .replaceAll(HAPROXY_STATS_SOCKET, socket);
  }).join("\n");
}

/** Runs `haproxy` with `args` to its end; says how to install it when it is missing. */
export async function runHaproxy(args: readonly string[]): Promise<Deno.CommandOutput> {
  try {
    return await new Deno.Command("haproxy", { args: [...args], stdout: "piped", stderr: "piped" })
      .output();
  } catch (error) {
    throw haproxyMissing(error);
  }
}

function haproxyMissing(error: unknown): unknown {
  if (!(error instanceof Deno.errors.NotFound)) return error;
  return new Error(
    "These tests need the haproxy command on PATH, and it was not found. " +
      "Install it (for example `apt-get install haproxy`); .ci/run does.",
  );
}

/**
 * A real `haproxy` running deploy/haproxy.cfg with every port moved to a
 * free one and its admin socket in `dir`; disposing of it kills it.
 */
export class HaproxyProcess implements AsyncDisposable {
  /** Where clients connect. */
  readonly frontendPort: number;
  /** Where each replica must listen, in the config's order. */
  readonly replicaPorts: readonly number[];
  /** Where each replica's `--metrics-port` must be, for the `/readyz` checks. */
  readonly metricsPorts: readonly number[];
  /** The stats page's port. */
  readonly statsPort: number;
  /** The admin socket's path. */
  readonly socketPath: string;
  /** What HAProxy printed (its log goes to stdout), for failure messages. */
  readonly output: LineCollector;
  readonly #child: Deno.ChildProcess;
  readonly #errors: LineCollector;
  #exited = false;

  private constructor(child: Deno.ChildProcess, ports: Map<number, number>, socketPath: string) {
    this.#child = child;
    child.status.then(() => this.#exited = true);
    this.output = new LineCollector(child.stdout);
    this.#errors = new LineCollector(child.stderr);
    this.frontendPort = ports.get(HAPROXY_PORTS.frontend)!;
    this.replicaPorts = HAPROXY_PORTS.replicas.map((port) => ports.get(port)!);
    this.metricsPorts = HAPROXY_PORTS.metrics.map((port) => ports.get(port)!);
    this.statsPort = ports.get(HAPROXY_PORTS.stats)!;
    this.socketPath = socketPath;
  }

  /** Writes the relocated config in `dir`, starts HAProxy on it, and waits until its admin socket answers. */
  static async start(dir: string): Promise<HaproxyProcess> {
    const ports = new Map<number, number>();
    const { frontend, replicas, metrics, stats } = HAPROXY_PORTS;
    for (const port of [frontend, ...replicas, ...metrics, stats]) ports.set(port, freePort());
    const socketPath = `${dir}/haproxy.sock`;
    const configPath = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      configPath,
      relocateHaproxyConfig(await Deno.readTextFile(HAPROXY_CONFIG), ports, socketPath),
    );
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("haproxy", {
        args: ["-db", "-f", configPath],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      throw haproxyMissing(error);
    }
    const haproxy = new HaproxyProcess(child, ports, socketPath);
    try {
      await waitFor(
        () => haproxy.command("show info").then(() => true, () => false),
        "HAProxy's admin socket to answer",
        START_DEADLINE_MS,
      );
      return haproxy;
    } catch (error) {
      await haproxy[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** Everything HAProxy printed so far. */
  get log(): string {
    return [...this.#errors.lines, ...this.output.lines].join("\n");
  }

  /** Sends one command to the admin socket and returns its answer. */
  async command(line: string): Promise<string> {
    if (this.#exited) assert.fail(`HAProxy exited:\n${this.log}`);
    const conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    try {
      await writeAll(conn, new TextEncoder().encode(`${line}\n`));
      return await withDeadline(new Response(conn.readable).text(), `HAProxy's answer to ${line}`);
    } finally {
      try {
        conn.close();
      } catch {
        // The readable's end closed it.
      }
    }
  }

  /**
   * Each replica's state as HAProxy sees it, by name: its status and the
   * result of its last health check, such as `UP L7OK`, `UP 1/2 L7STS`
   * (one failed check: a 503) or `DOWN L4CON` (refused). Before its first
   * check a server is `UP INI`: HAProxy starts every server as up.
   */
  async serverStates(): Promise<Map<string, string>> {
    const [head, ...rows] = (await this.command("show stat")).trim().split("\n");
    const columns = head.replace(/^# /, "").split(",");
    const [proxy, name, status, check] = ["pxname", "svname", "status", "check_status"]
      .map((column) => columns.indexOf(column));
    return new Map(
      rows.map((row) => row.split(","))
        .filter((cells) =>
          cells[proxy] === "addrbook_replicas" && REPLICA_NAMES.includes(cells[name])
        )
        .map((cells) => [cells[name], `${cells[status]} ${cells[check]}`]),
    );
  }

  /** Waits until HAProxy's status of `replica` matches `state`. */
  waitForState(replica: string, state: RegExp): Promise<void> {
    // HAProxy's view of a server changes with no event to await: look until it does.
    return waitFor(
      async () => state.test((await this.serverStates()).get(replica) ?? ""),
      `HAProxy to mark ${replica} ${state.source}`,
      HAPROXY_HEALTH_DEADLINE_MS,
    );
  }

  /** Kills HAProxy and waits for it and its output to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await this.#child.status;
    await this.output.done;
    await this.#errors.done;
  }
}
