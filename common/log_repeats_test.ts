import assert from "node:assert/strict";
import fc from "fast-check";
import { DEFAULT_REPEAT_INTERVAL_MS, FailureEpisode, RepeatSummary } from "./log_repeats.ts";

const MINUTE = DEFAULT_REPEAT_INTERVAL_MS;

Deno.test("note: the first occurrence is reported, repeats are counted and reported after the interval", () => {
  const repeats = new RepeatSummary();
  assert.equal(repeats.note("192.0.2.7 rate_limited", 0), 1);
  for (let t = 1; t < 100; t++) assert.equal(repeats.note("192.0.2.7 rate_limited", t), 0);
  assert.equal(repeats.note("192.0.2.7 rate_limited", MINUTE - 1), 0);
  assert.equal(repeats.note("192.0.2.7 rate_limited", MINUTE), 101, "100 repeats and this one");
  assert.equal(repeats.note("192.0.2.7 rate_limited", MINUTE + 1), 0);
  assert.equal(repeats.note("192.0.2.8 rate_limited", MINUTE + 1), 1, "another key is separate");
  assert.equal(repeats.note("192.0.2.7 found_limit", MINUTE + 1), 1);
});

Deno.test("flush: repeats of a burst that stopped are reported once, then the key starts afresh", () => {
  const repeats = new RepeatSummary({ intervalMs: 1000 });
  repeats.note("a", 0);
  repeats.note("a", 10);
  repeats.note("a", 20);
  repeats.note("b", 500);
  assert.deepEqual(repeats.flush(999), []);
  assert.deepEqual(repeats.flush(1000), [["a", 2]]);
  assert.equal(repeats.size, 1, "a is forgotten; b's interval is still running");
  assert.deepEqual(repeats.flush(1500), [], "b had no repeats");
  assert.equal(repeats.size, 0);
  assert.equal(repeats.note("a", 1600), 1);
});

Deno.test("the keys remembered are bounded, the one known longest forgotten first", () => {
  const repeats = new RepeatSummary({ maxKeys: 3 });
  for (const key of ["a", "b", "c"]) repeats.note(key, 0);
  assert.equal(repeats.note("a", 1), 0);
  assert.equal(repeats.note("d", 2), 1);
  assert.equal(repeats.size, 3);
  assert.equal(repeats.note("a", 3), 1, "a was forgotten, so it is reported again");
  assert.equal(repeats.note("c", 4), 0);
});

Deno.test("options out of range are range errors", () => {
  assert.throws(() => new RepeatSummary({ intervalMs: 0 }), RangeError);
  assert.throws(() => new RepeatSummary({ maxKeys: 0 }), RangeError);
});

Deno.test("every occurrence is reported exactly once, and a key at most once per interval (property)", () => {
  const events = fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.nat(3000)), {
    maxLength: 200,
  });
  fc.assert(
    fc.property(events, fc.array(fc.nat(3000), { maxLength: 5 }), (steps, flushes) => {
      const repeats = new RepeatSummary({ intervalMs: 1000 });
      let now = 0;
      let reported = 0;
      const lastReport = new Map<string, number>();
      const report = (key: string, count: number) => {
        const last = lastReport.get(key);
        assert.ok(last === undefined || now - last >= 1000 || count === 1);
        lastReport.set(key, now);
        reported += count;
      };
      steps.forEach(([key, gap], i) => {
        now += gap;
        const count = repeats.note(key, now);
        if (count > 0) report(key, count);
        if (flushes.includes(i)) { for (const [k, c] of repeats.flush(now)) report(k, c); }
      });
      now += 1000;
      for (const [key, count] of repeats.flush(now)) report(key, count);
      assert.equal(reported, steps.length);
    }),
    { seed: 20261202, numRuns: 300 },
  );
});

Deno.test("FailureEpisode reports the first failure, then a count an interval, then the end after a quiet time", () => {
  const episode = new FailureEpisode({ intervalMs: 1000, quietMs: 300 });
  assert.equal(episode.succeeded(0), 0);
  const reports = [];
  for (let now = 0; now < 2500; now += 100) {
    reports.push(episode.failed(now));
    assert.equal(episode.succeeded(now + 50), 0, "a success between failures does not end it");
  }
  assert.deepEqual(reports.filter((count) => count > 0), [1, 10, 10]);
  assert.ok(episode.ongoing);
  assert.equal(episode.succeeded(2500), 0, "not quiet long enough yet");
  assert.equal(episode.succeeded(2700), 25);
  assert.ok(!episode.ongoing);
  assert.equal(episode.failed(2800), 1, "a new episode is reported at once");
  assert.throws(() => new FailureEpisode({ intervalMs: 0 }), RangeError);
});
