import assert from "node:assert/strict";
import { envArgs, envName, type FlagTable } from "../../cli/flags.ts";
import { advertiseAddress, MANAGER_FLAGS, MANAGER_USAGE } from "../../cli/manager_flags.ts";
import { RUNNER_FLAGS, RUNNER_USAGE } from "../../cli/runner_flags.ts";
import { VicoError } from "../../core/errors.ts";

const OPTIONS = {
  manager: { type: "string" },
  "max-output": { type: "string" },
  persist: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean" },
  join: { type: "string" },
} as const;

Deno.test({
  name: "envName maps a flag to VICO_ and its name in capitals",
  permissions: "none",
  fn() {
    assert.equal(envName("manager"), "VICO_MANAGER");
    assert.equal(envName("max-output"), "VICO_MAX_OUTPUT");
  },
});

Deno.test({
  name: "envArgs turns set variables into flags, before the command line, skipping help and the skip list",
  permissions: "none",
  fn() {
    const env: Record<string, string> = {
      VICO_MANAGER: "head:7707",
      VICO_MAX_OUTPUT: "1G",
      VICO_PERSIST: "yes",
      VICO_QUIET: "0",
      VICO_HELP: "1",
      VICO_JOIN: "vico1_token",
    };
    assert.deepEqual(envArgs(OPTIONS, (n) => env[n], ["help", "join"]), [
      "--manager=head:7707",
      "--max-output=1G",
      "--persist",
    ]);
    assert.deepEqual(envArgs(OPTIONS, () => undefined), []);
    assert.deepEqual(envArgs(OPTIONS, (n) => (n === "VICO_MANAGER" ? "" : undefined)), [], "empty means unset");
  },
});

Deno.test({
  name: "envArgs refuses a boolean variable it cannot read, naming it",
  permissions: "none",
  fn() {
    assert.throws(
      () => envArgs(OPTIONS, (n) => (n === "VICO_PERSIST" ? "maybe" : undefined)),
      (err) => err instanceof VicoError && err.code === "USAGE" && /VICO_PERSIST="maybe"/.test(err.message),
    );
  },
});

Deno.test({
  name: "MANAGER_USAGE and RUNNER_USAGE list every flag of their tables, so help and parsing cannot drift",
  permissions: "none",
  fn() {
    for (const [table, usage] of [[MANAGER_FLAGS, MANAGER_USAGE], [RUNNER_FLAGS, RUNNER_USAGE]] as const) {
      for (const [flag, spec] of Object.entries(table as FlagTable)) {
        const short = spec.short === undefined ? "      " : `  -${spec.short}, `;
        assert.ok(usage.includes(`\n${short}--${flag}`), `--${flag} is missing from the usage text`);
      }
    }
  },
});

Deno.test({
  name: "envArgs leaves out flags marked env: false (runner --join: VICO_JOIN holds the token itself)",
  permissions: "none",
  fn() {
    assert.deepEqual(envArgs(RUNNER_FLAGS, (n) => (n === "VICO_JOIN" ? "vico1_token" : undefined)), []);
  },
});

Deno.test("advertiseAddress: what runner --manager takes: an IPv6 host bracketed, a wildcard named by this host, --advertise as given", () => {
  assert.equal(advertiseAddress(undefined, "::1", 7707), "[::1]:7707");
  assert.equal(advertiseAddress(undefined, "127.0.0.1", 7707), "127.0.0.1:7707");
  assert.equal(advertiseAddress(undefined, "0.0.0.0", 7707), `${Deno.hostname()}:7707`);
  assert.equal(advertiseAddress("head.example", "0.0.0.0", 7707), "head.example:7707");
  assert.equal(advertiseAddress("head.example:9000", "0.0.0.0", 7707), "head.example:9000");
  assert.equal(advertiseAddress("[fd00::1]", "::", 7707), "[fd00::1]:7707");
});
