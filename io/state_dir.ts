/**
 * Where vico keeps state between starts.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { VicoError } from "../core/errors.ts";

/**
 * `$XDG_STATE_HOME/vico/<role>`, or `~/.local/state/vico/<role>`. As the
 * XDG spec says, an empty or relative `XDG_STATE_HOME` is ignored; a `HOME`
 * that is unset, empty or relative is refused rather than read as the
 * current directory (a state kept there would be another one at the next
 * start from elsewhere: a new identity, every join token broken).
 *
 * @throws {VicoError} `USAGE` when there is no absolute home to keep it under.
 */
export function defaultStateDir(role: "runner" | "manager"): string {
  const xdg = Deno.env.get("XDG_STATE_HOME");
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, "vico", role);
  const home = Deno.env.get("HOME");
  if (home === undefined || !isAbsolute(home)) {
    throw new VicoError(
      "USAGE",
      `HOME is ${home === undefined ? "not set" : `not an absolute path (${JSON.stringify(home)})`}, ` +
        `so there is no default state directory: give --state-dir DIR`,
    );
  }
  return join(home, ".local", "state", "vico", role);
}
