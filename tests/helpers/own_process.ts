/**
 * Tests that measure the whole process (its resident memory) run in a
 * `deno test` process of their own: `deno test --parallel` runs the suite's
 * files side by side in one process, so their allocations would count.
 *
 * {@linkcode ownProcessTest} registers, in the suite, a test that starts
 * `deno test` on the same file filtered to this one test, with
 * `VICO_OWN_PROCESS` naming it; in that child the body itself runs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const OWN = "VICO_OWN_PROCESS";

/**
 * Registers `fn` as the test `name` run in a process of its own.
 *
 * @param url The calling file's `import.meta.url`.
 * @param name The test's name (unique within the file).
 * @param fn The test.
 */
export function ownProcessTest(url: string, name: string, fn: () => Promise<void>): void {
  if (Deno.env.get(OWN) === name) {
    Deno.test(name, fn);
    return;
  }
  Deno.test(`${name} (a process of its own)`, async () => {
    const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-q", "--config", config, "-P=test", "--no-check", "--filter", name, fileURLToPath(url)],
      env: { NO_COLOR: "1", [OWN]: name },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
    assert.match(said, /ok \| 1 passed \| 0 failed/, said);
  });
}
