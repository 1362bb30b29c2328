import assert from "node:assert/strict";
import { lock, unlock } from "./shared_mutex.ts";
import { withDeadline } from "../testing/deadlines.ts";

Deno.test("lock and unlock: free, held, free again, in one thread", () => {
  const words = new Int32Array(new SharedArrayBuffer(8));
  lock(words, 1);
  assert.equal(Atomics.load(words, 1), 1);
  unlock(words, 1);
  assert.equal(Atomics.load(words, 1), 0);
  lock(words, 1);
  unlock(words, 1);
  assert.deepEqual([...words], [0, 0]);
});

/**
 * Each worker adds to a counter by a slow read-modify-write inside the lock.
 * The critical section is long, so without mutual exclusion a thread is
 * almost surely interrupted inside it, by the scheduler or by the other
 * core, and increments are lost.
 */
const WORKER_SOURCE = (moduleUrl: string) => `
import { lock, unlock } from ${JSON.stringify(moduleUrl)};
self.onmessage = (event) => {
  const { words, rounds, workers } = event.data;
  Atomics.add(words, 2, 1);
  for (let i = 0; i < 1000 && Atomics.load(words, 2) < workers; i++) {
    Atomics.wait(words, 2, Atomics.load(words, 2), 10);
  }
  let waste = 0;
  for (let i = 0; i < rounds; i++) {
    lock(words, 0);
    const value = words[1];
    for (let j = 0; j < 300; j++) waste += j % 7;
    words[1] = value + 1;
    unlock(words, 0);
  }
  self.postMessage(waste > 0);
};
`;

Deno.test("lock: three workers incrementing one counter under it lose no increment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shared_mutex_test_" });
  const workers: Worker[] = [];
  try {
    const path = `${dir}/count.js`;
    await Deno.writeTextFile(
      path,
      WORKER_SOURCE(new URL("./shared_mutex.ts", import.meta.url).href),
    );
    const words = new Int32Array(new SharedArrayBuffer(12)); // lock, counter, start gate
    const rounds = 5_000;
    for (let i = 0; i < 3; i++) {
      workers.push(new Worker(new URL(`file://${path}`), { type: "module" }));
    }
    const done = Promise.all(workers.map((worker) =>
      new Promise<void>((resolve, reject) => {
        worker.onmessage = () => resolve();
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(event.message));
        };
        worker.postMessage({ words, rounds, workers: workers.length });
      })
    ));
    await withDeadline(done, "the workers to finish their increments");
    assert.equal(words[1], 3 * rounds);
    assert.equal(words[0], 0, "the lock is free at the end");
  } finally {
    for (const worker of workers) worker.terminate();
    await Deno.remove(dir, { recursive: true });
  }
});
