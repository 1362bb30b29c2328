import assert from "node:assert/strict";
import { coalesced } from "./coalesce.ts";

/** A task whose runs are ended by hand, counting how many ran and how many at once. */
function manualTask() {
  const ends: (() => void)[] = [];
  const state = { runs: 0, running: 0, mostAtOnce: 0 };
  const task = () => {
    state.runs++;
    state.running++;
    state.mostAtOnce = Math.max(state.mostAtOnce, state.running);
    return new Promise<void>((resolve) => ends.push(resolve)).finally(() => state.running--);
  };
  const endOne = async () => {
    ends.shift()!();
    // Let the wrapper see the end and start the pending run, if any.
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  return { task, state, endOne };
}

Deno.test("coalesced: a storm of calls gives one run under way and one after it", async () => {
  const { task, state, endOne } = manualTask();
  const run = coalesced(task);
  const calls = Array.from({ length: 1000 }, () => run());
  assert.equal(state.runs, 1);
  await endOne();
  assert.equal(state.runs, 2, "one more run for every call made while the first ran");
  const later = run();
  await endOne();
  assert.equal(state.runs, 3, "a call during the second run gets a third");
  await endOne();
  await Promise.all([...calls, later]);
  assert.equal(state.mostAtOnce, 1);
});

Deno.test("coalesced: each call resolves after a run that began after it", async () => {
  const { task, endOne } = manualTask();
  const run = coalesced(task);
  let firstDone = false;
  let secondDone = false;
  run().then(() => firstDone = true);
  const second = run().then(() => secondDone = true);
  await endOne();
  assert.ok(firstDone);
  assert.ok(!secondDone, "the second call waits for the run after the first");
  await endOne();
  await second;
});

Deno.test("coalesced: a failed run does not stop the next", async () => {
  let runs = 0;
  const run = coalesced(() => {
    runs++;
    return runs === 1 ? Promise.reject(new Error("the file was bad")) : Promise.resolve();
  });
  const first = run();
  const second = run();
  await assert.rejects(first, /the file was bad/);
  await second;
  assert.equal(runs, 2);
});
