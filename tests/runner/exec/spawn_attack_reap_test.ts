/**
 * Runs `spawn_attack_reap_checks.ts` in a `deno test` process of its own:
 * its checks count the process's children and descriptors, which the
 * suite's other files would add to.
 */

import assert from "node:assert/strict";

Deno.test("attack: reaping races and descriptor leaks of runProcess(), both paths (spawn_attack_reap_checks.ts, a process of its own)", async () => {
  const checks = new URL("./spawn_attack_reap_checks.ts", import.meta.url).pathname;
  const config = new URL("../../../deno.json", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-q", "--config", config, "-P=test", "--no-check", checks],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, said);
  assert.match(said, /ok \| 4 passed \| 0 failed/, said);
});
