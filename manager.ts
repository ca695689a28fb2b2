/**
 * `manager`: serves a job list to vico runners and records every result. The command line's parts are in `cli/`
 * (`cli/manager_main.ts` wires them).
 *
 * @module
 */

import { main } from "./cli/manager_main.ts";

export { main };

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
