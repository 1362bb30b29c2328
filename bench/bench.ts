/**
 * The addrbook load generator, in the spirit of `redis-benchmark`:
 * `deno task bench --help`.
 *
 * By default it writes a synthetic book to a temporary file, starts a server
 * on it, drives it for a while and stops it; with `--host`/`--port` it drives
 * a server that is already running. Load is closed-loop: each connection
 * sends a batch of `--pipeline` queries in one write, waits for all their
 * replies, records the batch's latency and sends the next batch. The load
 * runs on `--threads` worker threads, since one JavaScript thread can be the
 * bottleneck before the server is.
 *
 * The pieces, in `bench_*.ts`: the options (`bench_args`), the keys and
 * their frames (`bench_keys`), the latency histogram (`bench_histogram`),
 * what a thread counts (`bench_tally`), a load thread (`bench_worker`, the
 * worker's entry point) and the main thread driving them (`bench_run`),
 * the server bench starts (`bench_server`), the results (`bench_report`)
 * and the command line tying them together (`bench_cli`).
 *
 * @module
 */

import { main } from "./cli.ts";

export { main } from "./cli.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
