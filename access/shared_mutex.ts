/**
 * A mutex in one 32-bit word of shared memory, for state that several
 * worker threads update together (see access/limits.ts).
 *
 * The word is 0 when free, 1 when held, 2 when held with threads waiting.
 * Taking a free lock is one `Atomics.compareExchange`, releasing it one
 * `Atomics.exchange`, so an uncontended critical section costs two atomic
 * operations. A thread that finds it held spins briefly (the holder
 * usually leaves within nanoseconds), then sleeps in `Atomics.wait` and is
 * woken by the releasing thread's `Atomics.notify`, so a holder that was
 * descheduled does not leave the others burning a core. This is the
 * futex-based mutex of Ulrich Drepper's "Futexes Are Tricky".
 *
 * Critical sections must be short and must not throw between `lock` and
 * `unlock` (or release in a `finally`).
 *
 * ```ts
 * import { lock, unlock } from "./shared_mutex.ts";
 *
 * const words = new Int32Array(new SharedArrayBuffer(8)); // [lock, counter]
 * lock(words, 0);
 * words[1]++;
 * unlock(words, 0);
 * ```
 *
 * @module
 */

/** Spins on a held lock before sleeping on it. */
const SPINS = 64;
const FREE = 0;
const HELD = 1;
const CONTENDED = 2;

/** Takes the lock in `words[at]`, waiting for it as long as it takes. */
export function lock(words: Int32Array, at: number): void {
  if (Atomics.compareExchange(words, at, FREE, HELD) === FREE) return;
  for (let spin = 0; spin < SPINS; spin++) {
    if (
      Atomics.load(words, at) === FREE && Atomics.compareExchange(words, at, FREE, HELD) === FREE
    ) {
      return;
    }
  }
  while (Atomics.exchange(words, at, CONTENDED) !== FREE) Atomics.wait(words, at, CONTENDED);
}

/** Releases the lock in `words[at]`, waking one waiting thread if there is one. */
export function unlock(words: Int32Array, at: number): void {
  if (Atomics.exchange(words, at, FREE) === CONTENDED) Atomics.notify(words, at, 1);
}
