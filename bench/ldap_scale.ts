/**
 * Thunderbird's autocomplete against a real server process with a large
 * book, end to end: writes a book of `--count` people (the entries
 * `compare-ldap.py` uses: `userN@example.com`, "User Number N"), starts
 * `server.ts` on it twice (without LDAP, then with `--ldap-port`), reads
 * each one's resident memory once it listens, and drives the LDAP one with
 * the C load generator `qrload` (`-m ldap -S`: the filter
 * `(|(cn=*K*)(mail=*K*)(givenName=*K*)(sn=*K*))`, sizeLimit 100, K a piece
 * of an address such as "user473", as compare-ldap.py makes them).
 *
 * ```sh
 * gcc -O2 -o /tmp/qrload ../shared/tools/qrload.c -lssl -lcrypto
 * deno run -A bench/ldap_scale.ts --qrload /tmp/qrload --count 1000000
 * deno run -A bench/ldap_scale.ts --qrload /tmp/qrload --count 10000000 --seconds 8
 * ```
 *
 * Prints one line per run (searches/s, p50, p99) and the memory of both
 * servers. Not a test: it asserts nothing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { REPO_DIR, SERVER_FLAGS } from "../testing/repo.ts";

const BASE = "dc=example,dc=com";
const LISTENING = /listening on \S+:(\d+).*?(?:ldap=ldap:\/\/\S+:(\d+))?$/;

const args = parseArgs({
  args: Deno.args,
  options: {
    count: { type: "string", default: "1000000" },
    qrload: { type: "string" },
    seconds: { type: "string", default: "4" },
    connections: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
  },
});
if (args.values.qrload === undefined) {
  console.error(
    "ldap_scale: --qrload PATH is required (gcc -O2 -o PATH ../shared/tools/qrload.c -lssl -lcrypto)",
  );
  Deno.exit(2);
}
const count = Number(args.values.count);
const dir = await Deno.makeTempDir({ prefix: "ldap_scale_" });

try {
  const book = `${dir}/book.csv`;
  const fragments = `${dir}/fragments.txt`;
  await writeBook(book, count);
  await writeFragments(fragments, count);

  const plain = await startServer(["--data", book]);
  const plainRss = rssMiB(plain.pid);
  await plain.stop();

  const started = performance.now();
  const ldap = await startServer(["--data", book, "--ldap-port", "0", "--ldap-base", BASE]);
  const startSeconds = (performance.now() - started) / 1000;
  const ldapRss = rssMiB(ldap.pid);
  console.log(
    `${count} entries: started with LDAP in ${startSeconds.toFixed(1)} s; resident memory ` +
      `${plainRss.toFixed(0)} MiB without LDAP, ${ldapRss.toFixed(0)} MiB with it ` +
      `(${(ldapRss / plainRss).toFixed(2)}x)`,
  );
  for (let round = 0; round < Number(args.values.rounds); round++) {
    const output = await new Deno.Command(args.values.qrload, {
      args: [
        ...["-m", "ldap", "-b", BASE, "-p", String(ldap.ldapPort), "-k", fragments],
        ...["-d", args.values.seconds, "-c", args.values.connections, "-P", "1", "-S"],
      ],
      stdout: "piped",
    }).output();
    console.log(
      `autocomplete c${args.values.connections}: ${new TextDecoder().decode(output.stdout).trim()}`,
    );
  }
  await ldap.stop();
} finally {
  await Deno.remove(dir, { recursive: true });
}

/** A server process started on the book, and where its LDAP port is. */
interface Started {
  pid: number;
  ldapPort: number;
  stop(): Promise<void>;
}

async function startServer(flags: string[]): Promise<Started> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...SERVER_FLAGS, "--port", "0", ...flags],
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`The server ended before it listened: ${text}`);
    text += value;
    const match = text.split("\n").map((line) => LISTENING.exec(line)).find((m) => m !== null);
    if (match) {
      // Drain the rest of its log so that it never blocks on a full pipe.
      (async () => {
        while (!(await lines.read()).done);
      })();
      return {
        pid: child.pid,
        ldapPort: Number(match[2] ?? 0),
        stop: async () => {
          child.kill("SIGTERM");
          await child.status;
        },
      };
    }
  }
}

/** Resident memory of a process, in MiB, from /proc. */
function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

async function writeBook(path: string, entries: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  let chunk = "email,name\n";
  for (let i = 0; i < entries; i++) {
    chunk += `user${i}@example.com,User Number ${i}\n`;
    if (chunk.length > 1 << 20) {
      await writeAll(file, encoder.encode(chunk));
      chunk = "";
    }
  }
  await writeAll(file, encoder.encode(chunk));
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

/** 20,000 pieces of addresses, as compare-ldap.py makes them: "user" and 3 or more leading digits. */
async function writeFragments(path: string, entries: number): Promise<void> {
  let seed = 7;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const lines: string[] = [];
  for (let i = 0; i < 20000; i++) {
    const digits = String(Math.floor(random() * 2 * entries));
    const length = Math.min(3, digits.length) +
      Math.floor(random() * (digits.length - Math.min(3, digits.length) + 1));
    lines.push(`user${digits.slice(0, length)}`);
  }
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}
