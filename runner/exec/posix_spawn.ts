/**
 * Starting a job's process through libc's `posix_spawn(3)` via Deno's FFI:
 * no fork of the runner, no extra exec (`setsid(1)`), and the job's merged
 * stdout and stderr written by the child itself straight into a file.
 *
 * The child gets:
 * - a session of its own (`POSIX_SPAWN_SETSID`), hence a process group it
 *   leads, so that ending the group ends all it started;
 * - default signal dispositions and an empty signal mask
 *   (`POSIX_SPAWN_SETSIGDEF`, `POSIX_SPAWN_SETSIGMASK`): Deno ignores
 *   `SIGPIPE`, and an ignored signal would survive the exec, so that
 *   `yes | head -1` would never end;
 * - stdin from `/dev/null` (or from a gate pipe, see {@linkcode SpawnRequest.gated}),
 *   stdout opened on the output file (`O_WRONLY|O_CREAT|O_TRUNC`, mode 0600,
 *   without `O_CLOEXEC`), or a `dup2` of a descriptor of the runner's
 *   ({@linkcode SpawnRequest.outputFd}), stderr a `dup2` of stdout;
 * - exactly the environment given (`envp`: a base encoded once, and the
 *   job's own variables), and optionally a working directory
 *   (`posix_spawn_file_actions_addchdir_np`, glibc 2.29 and later).
 *
 * `posix_spawnp` is called on the JavaScript thread: glibc's `clone(CLONE_VM |
 * CLONE_VFORK)` holds the caller until the child has run its file actions
 * and its `execve` has replaced its memory (about 0.2 ms for `/bin/sh` on
 * the development VM). Handing the call to a thread of Deno's blocking
 * pool instead measured slower (`--local 2` 12% fewer jobs/s): that thread
 * is idle most of the time, and the hand-off's latency was in every job's
 * path. No thread waits for a
 * child: each is asked `waitpid(pid, WNOHANG)` when `SIGCHLD` arrives, so
 * a thousand jobs running hold no thread at all.
 *
 * Platforms: Linux with glibc (`libc.so.6`) on a 64-bit architecture;
 * x86_64 is tested here, aarch64 shares every constant and struct size used
 * (`posix_spawnattr_t` is 336 bytes and `posix_spawn_file_actions_t` 80 on
 * both, `sigset_t` 128; the buffers here are larger still and only libc's
 * own `*_init`/`*_destroy` touch them). `POSIX_SPAWN_SETSID` needs glibc
 * 2.26. Anywhere else (musl, macOS, 32-bit, FFI not permitted)
 * {@linkcode PosixSpawn.open} returns `undefined` and callers use
 * `Deno.Command`.
 *
 * @module
 */

import { cString, ERRNO_SYMBOLS, errnoOf, LIBC, libcUsable, strerrorOf } from "../../io/libc.ts";

/** How a spawned process ended, as `waitpid(2)` tells it. */
export interface WaitStatus {
  /** Exit code when it exited (0-255), else `null`. */
  readonly code: number | null;
  /** Number of the signal that ended it, else `null`. */
  readonly signal: number | null;
}

/** What to start (see {@linkcode PosixSpawn.spawn}). */
export interface SpawnRequest {
  /** The program (looked up in `PATH` when it has no slash) and its arguments. */
  readonly argv: readonly string[];
  /**
   * The environment of the process: {@linkcode baseEnv}'s variables, with
   * these added or replacing them.
   */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Variables under {@linkcode env}, encoded once per object and kept (a
   * snapshot of the runner's environment that every job inherits: pass the
   * same object each time).
   */
  readonly baseEnv?: Readonly<Record<string, string>>;
  /**
   * The file that receives stdout and stderr, created or truncated by the
   * child; or {@linkcode outputFd}.
   */
  readonly outputPath?: string;
  /**
   * Instead of {@linkcode outputPath}: a descriptor of the runner's, open for
   * writing, that becomes the child's stdout and stderr (its open file
   * description is shared: the child writes at its offset). See
   * {@linkcode PosixSpawn.openOutput}.
   */
  readonly outputFd?: number;
  /** Working directory. */
  readonly cwd?: string;
  /**
   * Stdin is the read end of a pipe instead of `/dev/null`: the process can
   * wait on it (a gate) until {@linkcode SpawnedProcess.gate} writes or closes.
   */
  readonly gated?: boolean;
}

/** The write end of a gated process's stdin. */
export interface Gate {
  /** Writes one newline, then closes. */
  open(): void;
  /** Closes without writing (the process sees the end of its stdin). */
  close(): void;
}

/** A started process. */
export interface SpawnedProcess {
  /** Its pid, which is also its process group and session id. */
  readonly pid: number;
  /** Resolves once it has ended (and is reaped). */
  readonly status: Promise<WaitStatus>;
  /** With {@linkcode SpawnRequest.gated}: its stdin's write end. */
  readonly gate?: Gate;
}

/** A process that could not be started: libc's error number and text. */
export interface SpawnFailure {
  readonly errno: number;
  readonly error: string;
}

// glibc, Linux (identical on x86_64 and aarch64).
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_CLOEXEC = 0o2000000;
const SEEK_END = 2;
const F_SETLEASE = 1024;
const F_WRLCK = 1;
const F_UNLCK = 2;
/** Bigger than any libc's struct: only libc's own init/destroy write them. */
const ATTR_BYTES = 1024;
const FILE_ACTIONS_BYTES = 512;
const SIGSET_BYTES = 256;
const WNOHANG = 1;
const ENOENT = 2;
const ESRCH = 3;
const EINTR = 4;
/**
 * Children are reaped when `SIGCHLD` arrives; this poll is the safety net
 * for a signal missed (and keeps the event loop alive while children run:
 * a signal listener does not).
 */
const REAP_POLL_MS = 200;

const SYMBOLS = {
  posix_spawnp: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addopen: { parameters: ["buffer", "i32", "buffer", "i32", "u32"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addchdir_np: { parameters: ["buffer", "buffer"], result: "i32", optional: true },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fcntl_int: { name: "fcntl", parameters: ["i32", "i32", "i32"], result: "i32" },
  fstatvfs: { parameters: ["i32", "buffer"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  ...ERRNO_SYMBOLS,
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * The strings as C strings packed in one buffer (one encoding, one pointer
 * taken), and their addresses; the buffer must be kept alive while they are
 * used. The strings hold no NUL (the caller checked).
 */
function packedStrings(strings: readonly string[]): { buffer: Uint8Array<ArrayBuffer>; pointers: bigint[] } {
  const buffer = cString(strings.join("\0"));
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
  const pointers: bigint[] = [];
  for (let at = 0; pointers.length < strings.length; at = buffer.indexOf(0, at) + 1) pointers.push(base + BigInt(at));
  return { buffer, pointers };
}

const decoder = new TextDecoder();
const PROC = cString("/proc");
const DIRENT_NAME_OFFSET = 19;
/** The shortest a scan of `/proc` serves (see {@linkcode PosixSpawn.groupRunning}). */
const GROUP_SCAN_REUSE_MS = 50;

/** `/dev/null`, for every spawn's stdin. */
const DEV_NULL = cString("/dev/null");
/** The empty C string. */
const EMPTY = cString("");

/**
 * An environment encoded once for many spawns: its C strings, by name
 * (see {@linkcode PosixSpawn.spawn}'s `baseEnv`).
 */
interface EncodedEnv {
  readonly names: readonly string[];
  readonly strings: readonly Uint8Array<ArrayBuffer>[];
  readonly pointers: readonly bigint[];
}

const encodedEnvs = new WeakMap<object, EncodedEnv>();

function encodedEnv(env: Readonly<Record<string, string>>): EncodedEnv {
  let encoded = encodedEnvs.get(env);
  if (encoded === undefined) {
    const entries = Object.entries(env);
    const strings = entries.map(([k, v]) => cString(`${k}=${v}`));
    encoded = {
      names: entries.map(([k]) => k),
      strings,
      pointers: strings.map((c) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(c)))),
    };
    encodedEnvs.set(env, encoded);
  }
  return encoded;
}

/** libc's `posix_spawn`, opened once per process. */
export class PosixSpawn {
  readonly #libc: Libc;
  readonly #attr = new Uint8Array(ATTR_BYTES);
  /** Children waited for, and what learns how each ended. */
  readonly #children = new Map<number, (status: WaitStatus) => void>();
  readonly #raw = new Int32Array(1);
  #poll: ReturnType<typeof setInterval> | undefined;
  readonly #onChild = () => this.#reap();

  private constructor(libc: Libc) {
    this.#libc = libc;
    // Before the first child: a SIGCHLD the runner inherited as ignored would
    // have the kernel reap children unasked (waitpid then knows nothing). A
    // signal listener does not keep the process alive.
    Deno.addSignalListener("SIGCHLD", this.#onChild);
    const sigdefault = new Uint8Array(SIGSET_BYTES);
    const sigmask = new Uint8Array(SIGSET_BYTES);
    // One attribute object for every spawn: libc only reads it.
    if (
      libc.posix_spawnattr_init(this.#attr) !== 0 ||
      libc.sigfillset(sigdefault) !== 0 || libc.sigemptyset(sigmask) !== 0 ||
      libc.posix_spawnattr_setsigdefault(this.#attr, sigdefault) !== 0 ||
      libc.posix_spawnattr_setsigmask(this.#attr, sigmask) !== 0 ||
      libc.posix_spawnattr_setflags(this.#attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) !==
        0
    ) {
      throw new Error("posix_spawnattr setup failed");
    }
  }

  static #opened: PosixSpawn | null | undefined;

  /**
   * The process's `posix_spawn`, or `undefined` where it cannot be used:
   * not Linux on a 64-bit architecture, FFI not permitted, no `libc.so.6`
   * (not glibc), or a glibc without `POSIX_SPAWN_SETSID`.
   */
  static open(): PosixSpawn | undefined {
    if (PosixSpawn.#opened !== undefined) return PosixSpawn.#opened ?? undefined;
    PosixSpawn.#opened = null;
    if (!libcUsable()) return undefined;
    try {
      const lib = Deno.dlopen(LIBC, SYMBOLS);
      PosixSpawn.#opened = new PosixSpawn(lib.symbols);
    } catch {
      // No glibc, or one too old for the flags: the caller's fallback it is.
    }
    return PosixSpawn.#opened ?? undefined;
  }

  /** Whether a working directory can be given (glibc 2.29 and later). */
  get canChdir(): boolean {
    return this.#libc.posix_spawn_file_actions_addchdir_np !== null;
  }

  /**
   * Creates (or truncates) a job's output file, mode 0600, as the runner's
   * own descriptor (close-on-exec: no other child inherits it), for
   * {@linkcode SpawnRequest.outputFd}; a job's output size is then an
   * `lseek` on it ({@linkcode sizeOf}), not a `stat` of its path.
   *
   * @throws {Error} With libc's reason when it cannot be opened.
   */
  openOutput(path: string): number {
    if (path.includes("\0")) throw new Error("the output path contains a NUL byte");
    const fd = this.#libc.open(cString(path), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600);
    if (fd < 0) throw new Error(`cannot open ${path}: ${this.strerror(this.#errno())}`);
    return fd;
  }

  /** The size of the file open as `fd` (it moves the descriptor's offset to the end). */
  sizeOf(fd: number): number {
    return Number(this.#libc.lseek(fd, 0n, SEEK_END));
  }

  /**
   * Whether the file system of the file open as `fd` has no block left for
   * this process (`fstatvfs`: `f_bavail`, or `f_bfree` for root, which may
   * use the reserved blocks): a job that wrote its output there may have
   * met `ENOSPC` and had it cut short. False when it cannot be told.
   */
  fileSystemFull(fd: number): boolean {
    const buf = this.#statvfs;
    if (this.#libc.fstatvfs(fd, buf) !== 0) return false;
    // struct statvfs (glibc, 64-bit): f_bsize, f_frsize, f_blocks, f_bfree (24), f_bavail (32), ... 8 bytes each.
    const view = new DataView(buf.buffer);
    return view.getBigUint64(this.#root ? 24 : 32, true) === 0n;
  }

  readonly #statvfs = new Uint8Array(256);
  readonly #root = (() => {
    try {
      return Deno.uid() === 0;
    } catch {
      return false;
    }
  })();

  /** Cuts the file open as `fd` to `size` bytes, and puts its offset there. */
  truncate(fd: number, size: number): void {
    if (this.#libc.ftruncate(fd, BigInt(size)) !== 0) {
      throw new Error(`cannot truncate the output: ${this.strerror(this.#errno())}`);
    }
    this.#libc.lseek(fd, BigInt(size), 0);
  }

  /**
   * Whether no process but this one's check has the file open: a write lease
   * (`F_SETLEASE`, `F_WRLCK`) is granted only then, so a process that left
   * its job's group and still holds the job's output is seen. False too
   * where leases are not available (another file system, `fs.leases-enable`
   * off, not the file's owner) or the file cannot be opened.
   */
  unheld(path: string): boolean {
    if (path.includes("\0")) return false;
    const libc = this.#libc;
    const fd = libc.open(cString(path), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return false;
    try {
      if (libc.fcntl_int(fd, F_SETLEASE, F_WRLCK) !== 0) return false;
      libc.fcntl_int(fd, F_SETLEASE, F_UNLCK);
      return true;
    } finally {
      libc.close(fd);
    }
  }

  /**
   * `kill(2)`: sends signal number `signal` to `pid` (a process group when
   * negative); false when it fails (no such process, not permitted). No
   * exception for a group that is gone: the common case when a job ends.
   */
  kill(pid: number, signal: number): boolean {
    return this.#libc.kill(pid, signal) === 0;
  }

  /**
   * Whether a process of group `pgid` still runs: false when every member
   * seen is a zombie (ended, waiting to be reaped by whoever adopted it,
   * which an init in a container may do seconds later); `kill(2)` cannot
   * tell, it reaches a group of zombies as well. Scans `/proc` through libc
   * (Deno's own file API grants `/proc` to `--allow-all` only), one `stat`
   * file per process; a scan serves every group asked about for a while
   * (at least 50 ms, ten times as long as it took), so that a host of many
   * processes does not hold the thread. True whenever it cannot be told:
   * `/proc` unreadable, a `stat` file that cannot be opened for another
   * reason than the process being gone, no member seen at all (another
   * pid namespace's `/proc`, `hidepid`).
   *
   * The scan is not atomic: a member that forks and exits while it runs can
   * be seen as a zombie and its child not at all. So false means "take it
   * for over, and still send the group SIGKILL", never "nothing to kill".
   */
  groupRunning(pgid: number): boolean {
    const now = performance.now();
    if (this.#groups === undefined || now >= this.#groupsUntil) {
      this.#groups = this.#scanGroups();
      const took = performance.now() - now;
      this.#groupsUntil = now + Math.max(GROUP_SCAN_REUSE_MS, 10 * took);
    }
    return this.#groups === null || this.#groups.get(pgid) !== false;
  }

  /** The last scan: for each process group seen, whether a member runs; null when `/proc` could not be read. */
  #groups: Map<number, boolean> | null | undefined;
  #groupsUntil = 0;
  readonly #stat = new Uint8Array(512);

  #scanGroups(): Map<number, boolean> | null {
    const libc = this.#libc;
    const dir = libc.opendir(PROC);
    if (dir === null) return null;
    const stat = this.#stat;
    const groups = new Map<number, boolean>();
    try {
      for (let entry = libc.readdir(dir); entry !== null; entry = libc.readdir(dir)) {
        // struct dirent64 (glibc, 64-bit): d_ino, d_off (8 bytes each), d_reclen (2), d_type (1), d_name.
        const name = Deno.UnsafePointerView.getCString(entry, DIRENT_NAME_OFFSET);
        if (!(name.charCodeAt(0) >= 0x30 && name.charCodeAt(0) <= 0x39)) continue;
        const fd = libc.open(cString(`/proc/${name}/stat`), O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) {
          const errno = this.#errno();
          if (errno === ENOENT || errno === ESRCH) continue; // gone meanwhile
          return null; // out of descriptors, not permitted: nothing known
        }
        const n = Number(libc.read(fd, stat, BigInt(stat.length)));
        libc.close(fd);
        if (n <= 0) continue;
        // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses, so from the last ')'.
        const text = decoder.decode(stat.subarray(0, n));
        const fields = text.slice(text.lastIndexOf(")") + 2).split(" ", 18);
        const group = Number(fields[2]);
        // A zombie leader whose other threads still run (it called pthread_exit) is a running process.
        const running = (fields[0] !== "Z" && fields[0] !== "X") || Number(fields[17]) > 1;
        groups.set(group, running || groups.get(group) === true);
      }
      return groups;
    } finally {
      libc.closedir(dir);
    }
  }

  /** Closes a descriptor of {@linkcode openOutput}. */
  closeFd(fd: number): void {
    this.#libc.close(fd);
  }

  #errno(): number {
    return errnoOf(this.#libc);
  }

  /** libc's text for an error number. */
  strerror(errno: number): string {
    return strerrorOf(this.#libc, errno);
  }

  /**
   * Starts a process, and returns once it exists (or could not start: then a
   * {@linkcode SpawnFailure}, as for a program that is missing or not executable).
   */
  spawn(request: SpawnRequest): SpawnedProcess | SpawnFailure {
    const libc = this.#libc;
    const base = request.baseEnv ?? {};
    const all = [...request.argv, request.outputPath ?? "", request.cwd ?? "", ...Object.entries(request.env).flat()];
    if (all.some((s) => s.includes("\0"))) return { errno: 22, error: "an argument contains a NUL byte" };
    if (request.argv.length === 0) return { errno: 22, error: "no program" };
    if (request.cwd !== undefined && !this.canChdir) return { errno: 38, error: "no posix_spawn chdir" };
    if ((request.outputPath === undefined) === (request.outputFd === undefined) || !((request.outputFd ?? 3) > 2)) {
      return { errno: 22, error: "give an output path or a descriptor above 2" };
    }
    const held: unknown[] = [];
    const file = cString(request.argv[0]);
    // The arguments and the job's own variables: one buffer (the base environment is encoded once, and kept).
    const extra = Object.entries(request.env);
    const packed = packedStrings([...request.argv, ...extra.map(([k, v]) => `${k}=${v}`)]);
    const argc = request.argv.length;
    const argv = new BigUint64Array(argc + 1);
    for (let i = 0; i < argc; i++) argv[i] = packed.pointers[i];
    const encoded = encodedEnv(base);
    const envp = new BigUint64Array(encoded.names.length + extra.length + 1);
    let n = 0;
    const names = encoded.names;
    for (let i = 0; i < names.length; i++) {
      if (!Object.hasOwn(request.env, names[i])) envp[n++] = encoded.pointers[i];
    }
    for (let i = argc; i < packed.pointers.length; i++) envp[n++] = packed.pointers[i];
    held.push(encoded, packed.buffer);
    const output = request.outputPath === undefined ? EMPTY : cString(request.outputPath);
    const devNull = DEV_NULL;
    const cwd = request.cwd === undefined ? undefined : cString(request.cwd);
    const actions = new Uint8Array(FILE_ACTIONS_BYTES);
    let gateFds: Int32Array<ArrayBuffer> | undefined;
    if (request.gated) {
      gateFds = new Int32Array(2);
      // Both ends close on exec: the child gets its read end as fd 0 by dup2 only.
      if (libc.pipe2(gateFds, O_CLOEXEC) !== 0) return { errno: 24, error: "cannot make a pipe" };
    }
    const closeGateFds = () => {
      if (gateFds === undefined) return;
      libc.close(gateFds[0]);
      libc.close(gateFds[1]);
    };
    if (libc.posix_spawn_file_actions_init(actions) !== 0) {
      closeGateFds();
      return { errno: 12, error: "posix_spawn_file_actions_init failed" };
    }
    const pid = new Int32Array(1);
    let rc: number;
    try {
      const setup = [
        gateFds === undefined
          ? libc.posix_spawn_file_actions_addopen(actions, 0, devNull, O_RDONLY, 0)
          : libc.posix_spawn_file_actions_adddup2(actions, gateFds[0], 0),
        request.outputFd === undefined
          ? libc.posix_spawn_file_actions_addopen(actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
          : libc.posix_spawn_file_actions_adddup2(actions, request.outputFd, 1),
        libc.posix_spawn_file_actions_adddup2(actions, 1, 2),
        ...(cwd === undefined ? [] : [libc.posix_spawn_file_actions_addchdir_np!(actions, cwd)]),
      ];
      if (setup.some((r) => r !== 0)) rc = 12;
      else rc = libc.posix_spawnp(pid, file, actions, this.#attr, argv, envp);
    } finally {
      libc.posix_spawn_file_actions_destroy(actions);
    }
    // Keeps every buffer alive until libc is done with them.
    held.push(file, argv, envp, output, devNull, actions, pid, ...(cwd === undefined ? [] : [cwd]));
    held.length = 0;
    if (rc !== 0) {
      closeGateFds();
      return { errno: rc, error: this.strerror(rc) };
    }
    let gate: Gate | undefined;
    if (gateFds !== undefined) {
      libc.close(gateFds[0]);
      const writeEnd = gateFds[1];
      let closed = false;
      const close = () => {
        if (!closed) libc.close(writeEnd);
        closed = true;
      };
      gate = {
        open: () => {
          // One byte into an empty pipe never blocks; a gone reader is EPIPE (SIGPIPE is ignored).
          if (!closed) libc.write(writeEnd, new Uint8Array([10]), 1n);
          close();
        },
        close,
      };
    }
    return { pid: pid[0], status: this.#wait(pid[0]), ...(gate === undefined ? {} : { gate }) };
  }

  /**
   * How `pid` ends. No thread waits for it: `waitpid(pid, WNOHANG)` on every
   * `SIGCHLD` (and on a slow poll) asks each child waited for whether it
   * has ended, only ours by their pids, never "any child" (the children of
   * `Deno.Command` are Deno's to reap).
   */
  #wait(pid: number): Promise<WaitStatus> {
    const ended = new Promise<WaitStatus>((resolve) => this.#children.set(pid, resolve));
    this.#poll ??= setInterval(this.#onChild, REAP_POLL_MS);
    // It may have ended already, its signal gone before it was listed.
    this.#reap();
    return ended;
  }

  #reap(): void {
    const raw = this.#raw;
    for (const [pid, resolve] of this.#children) {
      let r = this.#libc.waitpid(pid, raw, WNOHANG);
      while (r === -1 && this.#errno() === EINTR) r = this.#libc.waitpid(pid, raw, WNOHANG);
      if (r === 0) continue; // still running
      this.#children.delete(pid);
      // -1 is ECHILD (reaped elsewhere: nothing more to know).
      if (r !== pid) {
        resolve({ code: 127, signal: null });
        continue;
      }
      const s = raw[0];
      resolve((s & 0x7f) === 0 ? { code: (s >> 8) & 0xff, signal: null } : { code: null, signal: s & 0x7f });
    }
    if (this.#children.size === 0 && this.#poll !== undefined) {
      clearInterval(this.#poll);
      this.#poll = undefined;
    }
  }
}
