/**
 * Socket calls in batches: io_uring used as a queue of non-blocking `recv`
 * and `send` calls that one `io_uring_enter` makes together.
 *
 * Why: on the virtual machines this project is measured on a system call
 * costs about 1.1 µs, more than the lookup a query needs, and the epoll loop
 * makes a `recv` and a `send` for every connection a wakeup finds ready.
 * When a wakeup finds many, queuing those calls here makes two system calls
 * of what would be dozens (BENCHMARKS.md, issue 18's fifth session).
 *
 * Every call is made with `MSG_DONTWAIT`, so it completes during the enter
 * that submits it, with `-EAGAIN` where a socket has nothing to read or no
 * room: nothing stays queued in the kernel after {@linkcode SocketBatch.run}
 * returns, and no buffer is needed past it. The loop keeps its readiness
 * model (epoll) and its transports; only plain sockets' reads and writes
 * come here.
 *
 * io_uring may be missing or forbidden (a kernel before 5.11, a container's
 * seccomp filter, `kernel.io_uring_disabled`): {@linkcode SocketBatch.open}
 * then returns `undefined`, and the loop makes its calls one by one.
 *
 * ```ts ignore
 * const batch = SocketBatch.open(libc)!;
 * batch.receive(fd, bufferAddress(buffer), buffer.length, 7);
 * const done = batch.run();
 * // batch.tags[0] === 7, batch.results[0]: the byte count, 0 at EOF, or -errno
 * ```
 *
 * @module
 */

import type { Libc } from "../common/libc.ts";

/** io_uring_setup(2) and io_uring_enter(2) on x86_64 and aarch64 (asm-generic numbers). */
const SYS_IO_URING_SETUP = 425n;
const SYS_IO_URING_ENTER = 426n;
/** Submission ring entries: calls one batch holds. */
const DEFAULT_CAPACITY = 256;
/** One submitter, completions posted only when it asks: the cheapest ring (Linux 6.1). */
const SETUP_SINGLE_ISSUER = 1 << 12;
const SETUP_DEFER_TASKRUN = 1 << 13;
/** The rings and completions in one mapping (5.4), and a timeout on the wait (5.11). */
const FEAT_SINGLE_MMAP = 1 << 0;
const FEAT_EXT_ARG = 1 << 8;
const ENTER_GETEVENTS = 1 << 0;
const ENTER_EXT_ARG = 1 << 3;
const OP_SEND = 26;
const OP_RECV = 27;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
/** mmap(2) arguments: read and write, shared with the kernel, filled at once. */
const PROT_READ_WRITE = 0x3;
const MAP_SHARED_POPULATE = 0x01 | 0x8000;
const OFF_SQES = 0x10000000n;
/** Bytes of `struct io_uring_params`, of a submission entry, of a completion. */
const PARAMS_BYTES = 120;
const SQE_WORDS = 16;
const CQE_WORDS = 4;
/**
 * How long {@linkcode SocketBatch.run} waits for calls that should all have
 * completed at once: reached only if the kernel broke that promise.
 */
const RUN_TIMEOUT_NS = 1_000_000_000n;
/** V8 keeps typed arrays of up to 64 bytes inside its heap, where a collection may move them. */
const LARGEST_MOVABLE_BYTES = 64;

/**
 * The address of `bytes`' first byte, for a call queued in a
 * {@linkcode SocketBatch}. The buffer must stay alive and unchanged in size
 * until the batch has run.
 *
 * @throws {RangeError} when the buffer is small enough for V8 to keep in its heap, where it may move.
 */
export function bufferAddress(bytes: Uint8Array): number {
  if (bytes.buffer.byteLength <= LARGEST_MOVABLE_BYTES) {
    throw new RangeError(
      `A batched call needs a buffer V8 keeps in place: over ${LARGEST_MOVABLE_BYTES} bytes, got ${bytes.buffer.byteLength}.`,
    );
  }
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/** A queue of non-blocking socket calls made by one system call; see the module comment. */
export class SocketBatch {
  readonly #libc: Libc;
  readonly #ringFd: number;
  readonly #ringPointer: Deno.PointerObject;
  readonly #ringBytes: number;
  readonly #sqesPointer: Deno.PointerObject;
  readonly #sqesBytes: number;
  /** The shared ring as words: heads, tails, masks, the submission array and the completions. */
  readonly #ring: Uint32Array;
  readonly #completions: Int32Array;
  readonly #entries: Uint32Array;
  readonly #sqTail: number;
  readonly #sqMask: number;
  readonly #cqHead: number;
  readonly #cqTail: number;
  readonly #cqMask: number;
  readonly #cqes: number;
  /** The wait's argument (no signal mask, a timeout), and the timeout itself behind it. */
  readonly #waitArgument = new Uint8Array(new ArrayBuffer(4096));
  #tail: number;
  #queued = 0;
  /** How many calls one batch holds. */
  readonly capacity: number;
  /** After {@linkcode run}: each completed call's tag, in completion order. */
  readonly tags: Int32Array;
  /** After {@linkcode run}: each completed call's result: a byte count, or a negative errno. */
  readonly results: Int32Array;

  private constructor(libc: Libc, capacity: number, ringFd: number, params: DataView) {
    this.#libc = libc;
    this.#ringFd = ringFd;
    const sqEntries = params.getUint32(0, true);
    const cqEntries = params.getUint32(4, true);
    const sqArray = params.getUint32(64, true);
    const cqes = params.getUint32(100, true);
    this.#ringBytes = Math.max(sqArray + 4 * sqEntries, cqes + 16 * cqEntries);
    this.#sqesBytes = 4 * SQE_WORDS * sqEntries;
    const calls = libc.calls;
    const ring = calls.mmap(
      null,
      BigInt(this.#ringBytes),
      PROT_READ_WRITE,
      MAP_SHARED_POPULATE,
      ringFd,
      0n,
    );
    const sqes = calls.mmap(
      null,
      BigInt(this.#sqesBytes),
      PROT_READ_WRITE,
      MAP_SHARED_POPULATE,
      ringFd,
      OFF_SQES,
    );
    // mmap says MAP_FAILED, (void *) -1, when it fails.
    if (ring === null || sqes === null || Deno.UnsafePointer.value(ring) === 0xffffffffffffffffn) {
      throw new Error(`mmap of the io_uring rings failed with errno ${libc.errno()}.`);
    }
    this.#ringPointer = ring;
    this.#sqesPointer = sqes;
    const ringBuffer = Deno.UnsafePointerView.getArrayBuffer(ring, this.#ringBytes);
    this.#ring = new Uint32Array(ringBuffer);
    this.#completions = new Int32Array(ringBuffer);
    this.#entries = new Uint32Array(Deno.UnsafePointerView.getArrayBuffer(sqes, this.#sqesBytes));
    this.#sqTail = params.getUint32(44, true) >> 2;
    this.#sqMask = this.#ring[params.getUint32(48, true) >> 2];
    this.#cqHead = params.getUint32(80, true) >> 2;
    this.#cqTail = params.getUint32(84, true) >> 2;
    this.#cqMask = this.#ring[params.getUint32(88, true) >> 2];
    this.#cqes = cqes >> 2;
    // Entry i of the submission array names entry i: entries are used in ring order.
    for (let i = 0; i < sqEntries; i++) this.#ring[(sqArray >> 2) + i] = i;
    this.#tail = this.#ring[this.#sqTail];
    this.capacity = capacity;
    this.tags = new Int32Array(capacity);
    this.results = new Int32Array(capacity);
    // struct io_uring_getevents_arg: sigmask 0, sigmask_sz 0, pad, ts → the timespec at byte 64.
    const argument = new DataView(this.#waitArgument.buffer);
    const timeout = bufferAddress(this.#waitArgument) + 64;
    argument.setBigUint64(16, BigInt(timeout), true);
    argument.setBigInt64(64, RUN_TIMEOUT_NS / 1_000_000_000n, true);
    argument.setBigInt64(72, RUN_TIMEOUT_NS % 1_000_000_000n, true);
  }

  /**
   * A batch of up to `capacity` calls, or `undefined` when this kernel or
   * its sandbox offers no io_uring with what the batch needs.
   */
  static open(libc: Libc, capacity: number = DEFAULT_CAPACITY): SocketBatch | undefined {
    const params = new Uint8Array(PARAMS_BYTES);
    const view = new DataView(params.buffer);
    view.setUint32(8, SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN, true);
    let fd = libc.calls.io_uring_setup(SYS_IO_URING_SETUP, capacity, params);
    if (fd < 0) {
      // Before Linux 6.1 the cheaper ring is refused: a plain one serves as well.
      params.fill(0);
      fd = libc.calls.io_uring_setup(SYS_IO_URING_SETUP, capacity, params);
    }
    if (fd < 0) return undefined;
    const features = view.getUint32(20, true);
    if ((features & FEAT_SINGLE_MMAP) === 0 || (features & FEAT_EXT_ARG) === 0) {
      libc.calls.close(fd);
      return undefined;
    }
    try {
      return new SocketBatch(libc, capacity, fd, view);
    } catch {
      libc.calls.close(fd);
      return undefined;
    }
  }

  /** Calls queued and not yet run. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Queues `recv(fd, address, length, MSG_DONTWAIT)`; its result comes
   * back with `tag`. `address` is from {@linkcode bufferAddress}.
   *
   * @throws {RangeError} when the batch is full: run it first.
   */
  receive(fd: number, address: number, length: number, tag: number): void {
    this.#queue(OP_RECV, fd, address, length, MSG_DONTWAIT, tag);
  }

  /**
   * Queues `send(fd, address, length, MSG_DONTWAIT | MSG_NOSIGNAL)`; its
   * result comes back with `tag`.
   *
   * @throws {RangeError} when the batch is full: run it first.
   */
  send(fd: number, address: number, length: number, tag: number): void {
    this.#queue(OP_SEND, fd, address, length, MSG_DONTWAIT | MSG_NOSIGNAL, tag);
  }

  #queue(opcode: number, fd: number, address: number, length: number, flags: number, tag: number) {
    if (this.#queued === this.capacity) {
      throw new RangeError(
        `A socket batch holds ${this.capacity} calls; run it before queuing more.`,
      );
    }
    const at = (this.#tail & this.#sqMask) * SQE_WORDS;
    const entries = this.#entries;
    entries.fill(0, at, at + SQE_WORDS);
    entries[at] = opcode; // with flags and ioprio 0
    entries[at + 1] = fd;
    entries[at + 4] = address >>> 0;
    entries[at + 5] = Math.floor(address / 2 ** 32);
    entries[at + 6] = length;
    entries[at + 7] = flags;
    entries[at + 8] = tag; // user_data's low word
    this.#tail = (this.#tail + 1) >>> 0;
    this.#queued++;
  }

  /**
   * Makes every queued call, in one system call, and returns how many
   * completed: for each, {@linkcode tags} and {@linkcode results} hold its
   * tag and result, in completion order.
   *
   * @throws {Error} when io_uring refused the calls or left some unfinished.
   */
  run(): number {
    const count = this.#queued;
    if (count === 0) return 0;
    this.#queued = 0;
    Atomics.store(this.#ring, this.#sqTail, this.#tail);
    const entered = this.#libc.calls.io_uring_enter(
      SYS_IO_URING_ENTER,
      this.#ringFd,
      count,
      count,
      ENTER_GETEVENTS | ENTER_EXT_ARG,
      this.#waitArgument,
      24n,
    );
    if (entered < 0) {
      throw new Error(`io_uring_enter failed with errno ${this.#libc.errno()}.`);
    }
    const done = this.#reap();
    if (done < count) {
      throw new Error(`io_uring finished ${done} of ${count} calls that do not wait.`);
    }
    return done;
  }

  #reap(): number {
    const ring = this.#ring;
    const completions = this.#completions;
    let head = ring[this.#cqHead];
    const tail = Atomics.load(ring, this.#cqTail);
    let done = 0;
    while (head !== tail && done < this.capacity) {
      const at = this.#cqes + (head & this.#cqMask) * CQE_WORDS;
      this.tags[done] = completions[at];
      this.results[done] = completions[at + 2];
      done++;
      head = (head + 1) >>> 0;
    }
    Atomics.store(ring, this.#cqHead, head);
    return done;
  }

  /** Unmaps the rings and closes the ring's descriptor. */
  free(): void {
    this.#libc.calls.munmap(this.#sqesPointer, BigInt(this.#sqesBytes));
    this.#libc.calls.munmap(this.#ringPointer, BigInt(this.#ringBytes));
    this.#libc.calls.close(this.#ringFd);
  }
}
