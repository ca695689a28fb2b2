/**
 * `runner`: joins a vico manager and runs the jobs it hands out. The command line's parts are in `cli/`
 * (`cli/runner_main.ts` wires them).
 *
 * @module
 */

import { main } from "./cli/runner_main.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
