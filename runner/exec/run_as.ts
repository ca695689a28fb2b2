/**
 * The account a runner started as root runs its jobs as (`--user`), looked
 * up in the password database.
 *
 * @module
 */

import { VicoError } from "../../core/errors.ts";

/** A user to run jobs as. */
export interface RunAs {
  /** Login name (or the number given). */
  readonly name: string;
  /** User id. */
  readonly uid: number;
  /** Primary group id. */
  readonly gid: number;
}

/**
 * Looks up `spec` (a login name or a numeric uid) in `/etc/passwd`.
 *
 * @throws {VicoError} `USAGE` if there is no such user, or it is root.
 */
export async function resolveUser(spec: string, passwdPath = "/etc/passwd"): Promise<RunAs> {
  let passwd = "";
  try {
    passwd = await Deno.readTextFile(passwdPath);
  } catch {
    // No password database: only a numeric uid can be used.
  }
  let found: RunAs | undefined;
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (uid === undefined || gid === undefined) continue;
    if (name === spec || uid === spec) {
      found = { name, uid: Number(uid), gid: Number(gid) };
      break;
    }
  }
  if (found === undefined && /^[0-9]+$/.test(spec)) found = { name: spec, uid: Number(spec), gid: Number(spec) };
  if (found === undefined) throw new VicoError("USAGE", `--user: no user ${JSON.stringify(spec)} in ${passwdPath}`);
  if (found.uid === 0) throw new VicoError("USAGE", "--user must name an account other than root (use --allow-root)");
  return found;
}
