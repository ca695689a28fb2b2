/**
 * `deno task compile [--target TRIPLE] [--out DIR]`: builds the standalone
 * `manager` and `runner` executables with `deno compile`, each with exactly
 * the `vico` permission set from deno.json (never `-A`): read and write
 * (results, spools, state), net, run (jobs; `manager --local` runs them
 * too), env (VICO_* flags), ffi (jobs start through libc's posix_spawn),
 * and sys hostname/uid. The version comes from
 * deno.json and is printed by `--version`.
 *
 * `deno compile` downloads its `denort` runtime for the target from
 * dl.deno.land; where that cannot be reached, set `DENORT_BIN` to a denort
 * binary of the same Deno version (and the same target).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";

const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

const USAGE = `Usage: deno task compile [--target TRIPLE] [--out DIR]

Builds DIR/manager and DIR/runner (default DIR: dist; with --target:
dist/TRIPLE). Targets: ${TARGETS.join(", ")}.
Without network access to dl.deno.land, set DENORT_BIN=/path/to/denort.`;

const flags = parseArgs({
  args: Deno.args,
  options: { target: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
}).values;
if (flags.help) {
  console.log(USAGE);
  Deno.exit(0);
}
if (flags.target !== undefined && !TARGETS.includes(flags.target)) {
  console.error(`compile: unknown --target ${flags.target}\n\n${USAGE}`);
  Deno.exit(2);
}
const root = new URL("../", import.meta.url).pathname;
const out = flags.out ?? (flags.target === undefined ? join(root, "dist") : join(root, "dist", flags.target));
for (const name of ["manager", "runner"]) {
  const args = ["compile", "-q", "-P=vico", "-o", join(out, name)];
  if (flags.target !== undefined) args.push("--target", flags.target);
  args.push(join(root, `${name}.ts`));
  const { code } = await new Deno.Command(Deno.execPath(), { args, cwd: root, stdout: "inherit", stderr: "inherit" })
    .output();
  if (code !== 0) {
    console.error(
      `compile: deno compile ${name} failed (exit ${code}). If it could not download denort, set ` +
        "DENORT_BIN=/path/to/denort (the same Deno version and target).",
    );
    Deno.exit(1);
  }
  console.log(`built ${join(out, name)}`);
}
