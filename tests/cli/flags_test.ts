import assert from "node:assert/strict";
import { envArgs, envName } from "../../cli/flags.ts";
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
