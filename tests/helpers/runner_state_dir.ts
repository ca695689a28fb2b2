/**
 * Reads a persistent runner's state directory (see runner/runner_state.ts)
 * the way a person looking at it would: the results it keeps to deliver
 * (`pending/`), those it set aside (`set-aside/`), and the jobs it has
 * written down as running (`running/<life>/`).
 *
 * @module
 */

import { join } from "node:path";
import { parseTag } from "../../protocol/vico_extension.ts";

/** A result a runner keeps (or set aside), as its `.json` says. */
export interface KeptResult {
  /** Its name in the state directory (`pending/<name>.json`). */
  name: string;
  /** The job's command line. */
  command: string;
  /** Its exit status. */
  status: number;
  /** The tag of its hand-out (`run=… key=… attempt=…`), if it had one. */
  tag?: string;
  /** The run id in its tag. */
  run?: string;
  /** Why it was set aside (its `.reason` file), for one in `set-aside/`. */
  reason?: string;
}

function resultsIn(dir: string): KeptResult[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  const out: KeptResult[] = [];
  for (const e of entries) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    const name = e.name.slice(0, -".json".length);
    let meta: { command: string; status: number; tag?: string };
    try {
      meta = JSON.parse(Deno.readTextFileSync(join(dir, e.name)));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // moved meanwhile
      throw err;
    }
    let reason: string | undefined;
    try {
      reason = Deno.readTextFileSync(join(dir, name + ".reason")).trim();
    } catch {
      reason = undefined;
    }
    out.push({
      name,
      command: meta.command,
      status: meta.status,
      ...(meta.tag !== undefined ? { tag: meta.tag, run: parseTag(meta.tag).run } : {}),
      ...(reason !== undefined ? { reason } : {}),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The results `stateDir` keeps for delivery (`pending/`), by name. */
export function keptResults(stateDir: string): KeptResult[] {
  return resultsIn(join(stateDir, "pending"));
}

/** The results `stateDir` has set aside (`set-aside/`), by name, with their reasons. */
export function setAsideResults(stateDir: string): KeptResult[] {
  return resultsIn(join(stateDir, "set-aside"));
}

/**
 * How many jobs `stateDir` records as running (`running/<life>/<pgid>.json`):
 * over all runner lives, or only the life of the runner process `ownerPid`
 * (its `owner` file), leaving out what a killed runner's life left there.
 */
export function runningJobCount(stateDir: string, ownerPid?: number): number {
  let n = 0;
  let lives: Deno.DirEntry[];
  try {
    lives = [...Deno.readDirSync(join(stateDir, "running"))];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
  for (const life of lives) {
    if (!life.isDirectory) continue;
    try {
      if (ownerPid !== undefined) {
        const owner = Deno.readTextFileSync(join(stateDir, "running", life.name, "owner")).trim();
        if (owner.split(" ")[0] !== String(ownerPid)) continue;
      }
      for (const e of Deno.readDirSync(join(stateDir, "running", life.name))) {
        if (e.isFile && e.name.endsWith(".json")) n++;
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // a life that ended meanwhile
    }
  }
  return n;
}
