/**
 * The version baked into the binaries (from deno.json, bundled by
 * `deno compile`), and the protocol versions they speak.
 *
 * @module
 */

import config from "../deno.json" with { type: "json" };
import { BINARY_PROTOCOL_VERSION, TEXT_PROTOCOL_VERSION } from "../protocol/messages.ts";

/** vico's version, e.g. `0.1.0`. */
export const VERSION: string = config.version;

/**
 * What `--version` prints.
 *
 * @example
 * ```ts
 * import { versionText } from "./version.ts";
 * console.assert(versionText("runner").startsWith("runner (vico) "));
 * ```
 */
export function versionText(program: string): string {
  return `${program} (vico) ${VERSION}\n` +
    `protocols: text ${TEXT_PROTOCOL_VERSION}, binary ${BINARY_PROTOCOL_VERSION}, vico extension VICO/1\n` +
    `deno ${Deno.version.deno}, v8 ${Deno.version.v8}, typescript ${Deno.version.typescript}`;
}
