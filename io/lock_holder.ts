/**
 * Who holds a lock file. A process that takes an exclusive `flock` on a
 * file (a results directory's `.vico-lock`, a runner state directory's
 * `lock`, a spool directory's `.vico-owner`) writes this record into it, so
 * that whoever is refused the lock can say which process has it. The kernel
 * drops the lock when its holder dies, however it dies; the record is only
 * a name, never the proof.
 *
 * @module
 */

import { writeAll } from "./write_all.ts";

/** The process that holds a lock. */
export interface LockHolder {
  /** Its process id. */
  pid: number;
  /** Its host name. */
  host: string;
  /** When it took the lock (ISO-8601 UTC). */
  since: string;
}

/** This process, as the holder of a lock taken now. */
export function thisProcess(): LockHolder {
  return { pid: Deno.pid, host: Deno.hostname(), since: new Date().toISOString() };
}

/** The record's line: JSON and a newline. */
export function holderLine(holder: LockHolder = thisProcess()): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(holder) + "\n");
}

/** Replaces what `lock` holds with this process's record (call it once the lock is held). */
export async function writeHolder(lock: Deno.FsFile): Promise<LockHolder> {
  const holder = thisProcess();
  await lock.truncate(0);
  await lock.seek(0, Deno.SeekMode.Start);
  await writeAll(lock, holderLine(holder));
  return holder;
}

/** The holder named in the lock file at `path`; `undefined` when not written yet, torn or gone. */
export async function readHolder(path: string): Promise<LockHolder | undefined> {
  try {
    const h = JSON.parse(await Deno.readTextFile(path));
    if (typeof h?.pid === "number" && typeof h.host === "string" && typeof h.since === "string") {
      return { pid: h.pid, host: h.host, since: h.since };
    }
  } catch {
    // Not written yet, or torn: the holder is unnamed.
  }
  return undefined;
}

/** `"pid 123 on host since 2026-…"`, or "(it has not said which yet)". */
export function describeHolder(holder: LockHolder | undefined): string {
  return holder === undefined
    ? "(it has not said which yet)"
    : `pid ${holder.pid} on ${holder.host} since ${holder.since}`;
}
