/**
 * Where vico keeps state between starts.
 *
 * @module
 */

import { join } from "node:path";

/** `$XDG_STATE_HOME/vico/<role>`, or `~/.local/state/vico/<role>`. */
export function defaultStateDir(role: "runner" | "manager"): string {
  const xdg = Deno.env.get("XDG_STATE_HOME");
  const home = Deno.env.get("HOME") ?? ".";
  return join(xdg ?? join(home, ".local", "state"), "vico", role);
}
