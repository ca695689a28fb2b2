/**
 * Appending a large file around the page cache: `O_DIRECT` writes through
 * libc (Deno's FFI), from two aligned buffers that take turns, each write
 * off the JavaScript thread. A file written through the page cache costs
 * the writer the copy into freshly allocated cache pages and the `fsync`
 * their writeback (on this project's 2-core VM: 1 GiB in 1.4-2.1 s, 1.0-1.6
 * s of system time); written directly, the same GiB takes 0.4-0.6 s and
 * 0.1 s of CPU, and its `fsync` has only the metadata left.
 *
 * Linux with glibc on x86_64 or aarch64 only; elsewhere, or where FFI is
 * not permitted, or on a file system that refuses `O_DIRECT` (tmpfs, some
 * FUSE), {@linkcode DirectAppender.open} gives `undefined` and the caller
 * writes as before. A file system that takes the flag and refuses a write
 * (`EINVAL`: an alignment it wants bigger) has the flag cleared on that
 * descriptor: the writes go on through the page cache.
 *
 * @module
 */

import { cString, ERRNO_SYMBOLS, errnoOf, LIBC, libcUsable, strerrorOf } from "./libc.ts";

/** Buffer, offset and length alignment of the direct writes (covers 512-byte and 4 KiB sectors). */
const ALIGN = 4096;
/** Each of the two buffers of an appender. */
export const DIRECT_BUFFER_BYTES = 2 * 1024 * 1024;
/** Appenders open at once in this process: their buffers stay within 16 × 4 MiB whatever the connections. */
export const MAX_DIRECT_APPENDERS = 16;

const O_WRONLY = 0o1;
const O_CLOEXEC = 0o2000000;
/** `O_DIRECT` and `O_NOFOLLOW` are among the flags whose values differ between Linux's architectures. */
const O_DIRECT: Record<string, number> = { x86_64: 0o40000, aarch64: 0o200000 };
const O_NOFOLLOW: Record<string, number> = { x86_64: 0o400000, aarch64: 0o100000 };
const F_GETFL = 3;
const F_SETFL = 4;
const EINTR = 4;
const EINVAL = 22;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  pwriteNow: { name: "pwrite", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32", nonblocking: true },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ...ERRNO_SYMBOLS,
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (!libcUsable()) return null;
  try {
    libc = Deno.dlopen(LIBC, SYMBOLS).symbols;
  } catch {
    // Not glibc: the caller writes through the page cache.
  }
  return libc;
}

let open = 0;

/** An error of the system, with its `errno` name's number and libc's text, like Deno's own. */
function osError(lib: Libc, what: string, path: string): Error {
  const errno = errnoOf(lib);
  return Object.assign(new Error(`${strerrorOf(lib, errno)} (os error ${errno}): ${what} '${path}'`), { errno });
}

/** A buffer of `bytes` whose start is aligned to {@linkcode ALIGN} in memory. */
function alignedBuffer(bytes: number): Uint8Array {
  const raw = new Uint8Array(bytes + ALIGN);
  const at = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)) % BigInt(ALIGN));
  const skip = (ALIGN - at) % ALIGN;
  return raw.subarray(skip, skip + bytes);
}

/**
 * Appends to an existing file from an aligned offset on, through
 * `O_DIRECT`: {@linkcode write} what comes, then {@linkcode finish} (the
 * tail written, the file cut to its size and `fsync`ed) or
 * {@linkcode close} (what was written is left as it is).
 *
 * @example
 * ```ts ignore
 * const out = DirectAppender.open("big.part", 0);
 * if (out !== undefined) {
 *   await out.write(chunk);
 *   await out.finish();
 * }
 * ```
 */
export class DirectAppender {
  readonly #lib: Libc;
  readonly #fd: number;
  readonly #path: string;
  readonly #buffers: Uint8Array[];
  /** The writes in flight of each buffer (they never reject: a failure is kept in {@linkcode #failure}). */
  readonly #writing: (Promise<void> | undefined)[] = [undefined, undefined];
  #current = 0;
  #filled = 0;
  /** Where the current buffer's bytes go in the file. */
  #offset: number;
  #failure: unknown;
  #closed = false;

  private constructor(lib: Libc, fd: number, path: string, offset: number, bufferBytes: number) {
    this.#lib = lib;
    this.#fd = fd;
    this.#path = path;
    this.#offset = offset;
    this.#buffers = [alignedBuffer(bufferBytes), alignedBuffer(bufferBytes)];
  }

  /**
   * Opens `path` (which exists) to append at `offset`, a multiple of 4096;
   * `undefined` when it cannot be written directly here (see the module),
   * or when {@linkcode MAX_DIRECT_APPENDERS} are open already.
   */
  static open(path: string, offset: number, bufferBytes = DIRECT_BUFFER_BYTES): DirectAppender | undefined {
    if (offset % ALIGN !== 0 || bufferBytes % ALIGN !== 0 || bufferBytes <= 0) {
      throw new RangeError("Direct writes need an offset and a buffer size that are multiples of 4096");
    }
    const lib = loadLibc();
    if (lib === null || open >= MAX_DIRECT_APPENDERS || path.includes("\0")) return undefined;
    // Opened again by name: a link swapped in at that name since is refused, never written through.
    const flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW[Deno.build.arch] | O_DIRECT[Deno.build.arch];
    const fd = lib.open(cString(path), flags, 0);
    if (fd < 0) return undefined;
    open++;
    return new DirectAppender(lib, fd, path, offset, bufferBytes);
  }

  /** Appenders open now, in this process. */
  static get openCount(): number {
    return open;
  }

  /** Appends `chunk` (copied: the caller may reuse it once this settles). */
  async write(chunk: Uint8Array): Promise<void> {
    this.#check();
    let at = 0;
    while (at < chunk.length) {
      const buffer = this.#buffers[this.#current];
      const n = Math.min(chunk.length - at, buffer.length - this.#filled);
      buffer.set(n === chunk.length ? chunk : chunk.subarray(at, at + n), this.#filled);
      this.#filled += n;
      at += n;
      if (this.#filled === buffer.length) {
        this.#send();
        // The other buffer is filled next: its write must be done.
        await this.#writing[this.#current];
        this.#check();
      }
    }
  }

  /**
   * Writes what is left (its last block padded with zeros), cuts the file
   * to the bytes written and syncs it; then closes it. Throws the first
   * write's failure, if one failed.
   */
  async finish(): Promise<void> {
    try {
      const size = this.#offset + this.#filled;
      if (this.#filled > 0) {
        const padded = Math.ceil(this.#filled / ALIGN) * ALIGN;
        this.#buffers[this.#current].fill(0, this.#filled, padded);
        this.#filled = padded;
        this.#send();
      }
      await Promise.all(this.#writing);
      this.#check();
      if (this.#lib.ftruncate(this.#fd, BigInt(size)) !== 0) throw osError(this.#lib, "truncate", this.#path);
      // An fsync that failed is not asked again (a second one can succeed with the data lost), so its errno,
      // the other thread's, is not known here: the error says what failed, not why.
      if (await this.#lib.fsync(this.#fd) !== 0) throw new Error(`Cannot make '${this.#path}' durable: fsync failed`);
    } finally {
      await this.close();
    }
  }

  /** Waits for the writes in flight and closes the file, as it is. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#writing);
    this.#lib.close(this.#fd);
    open--;
  }

  #check(): void {
    if (this.#closed) throw new Error(`Direct appender of '${this.#path}' is closed`);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Starts writing the current buffer (its whole length is due) and turns to the other one. */
  #send(): void {
    const i = this.#current;
    this.#writing[i] = this.#pwrite(this.#buffers[i].subarray(0, this.#filled), this.#offset);
    this.#offset += this.#filled;
    this.#filled = 0;
    this.#current = 1 - i;
  }

  async #pwrite(bytes: Uint8Array, offset: number): Promise<void> {
    const lib = this.#lib;
    try {
      let done = 0;
      while (done < bytes.length) {
        const rest = done === 0 ? bytes : bytes.subarray(done);
        let n = Number(await lib.pwrite(this.#fd, rest, BigInt(rest.length), BigInt(offset + done)));
        if (n < 0) {
          // errno is the other thread's: the write is asked again here, where it can be read.
          n = Number(lib.pwriteNow(this.#fd, rest, BigInt(rest.length), BigInt(offset + done)));
          if (n < 0) {
            const err = osError(lib, "write", this.#path) as Error & { errno: number };
            if (err.errno === EINTR) continue;
            if (err.errno === EINVAL && this.#clearDirect()) continue;
            throw err;
          }
        }
        if (n === 0) throw new Error(`No progress writing '${this.#path}'`);
        done += n;
      }
    } catch (err) {
      this.#failure ??= err;
    }
  }

  /** Clears `O_DIRECT` on the descriptor (the writes go through the page cache); false if it was not set. */
  #clearDirect(): boolean {
    const flags = this.#lib.fcntl(this.#fd, F_GETFL, 0);
    const direct = O_DIRECT[Deno.build.arch];
    if (flags < 0 || (flags & direct) === 0) return false;
    return this.#lib.fcntl(this.#fd, F_SETFL, flags & ~direct) === 0;
  }
}
