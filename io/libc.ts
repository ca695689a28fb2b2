/**
 * What every caller of libc through Deno's FFI shares: whether libc can be
 * had here, the symbols for `errno` and its text, and C strings. Each
 * caller opens the symbols it needs itself (`runner/exec/posix_spawn.ts`
 * to start jobs, `io/direct_appender.ts` to write big outputs).
 *
 * @module
 */

/** The glibc shared object. */
export const LIBC = "libc.so.6";

/** The symbols {@linkcode errnoOf} and {@linkcode strerrorOf} need: spread them into a caller's own. */
export const ERRNO_SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** A library opened with {@linkcode ERRNO_SYMBOLS} among its symbols. */
export interface ErrnoSymbols {
  __errno_location(): Deno.PointerValue;
  strerror(errno: number): Deno.PointerValue;
}

/**
 * Whether libc may be called here: Linux on x86_64 or aarch64 (the
 * architectures whose flag values the callers know) with the `ffi`
 * permission granted. Whether `libc.so.6` is there (glibc) the caller's
 * `Deno.dlopen` tells.
 */
export function libcUsable(): boolean {
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) return false;
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

const encoder = new TextEncoder();

/** `s` as a NUL-terminated C string (the caller checked that `s` holds no NUL). */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(s + "\0") as Uint8Array<ArrayBuffer>;
}

/** This thread's `errno`, read right after the failed call (on this thread: not a `nonblocking` one's). */
export function errnoOf(lib: ErrnoSymbols): number {
  const p = lib.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** libc's text for an error number. */
export function strerrorOf(lib: ErrnoSymbols, errno: number): string {
  const p = lib.strerror(errno);
  return p === null ? `error ${errno}` : Deno.UnsafePointerView.getCString(p);
}
