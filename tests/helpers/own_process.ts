/**
 * Tests that measure the whole process (its resident memory) run in a
 * `deno test` process of their own: `deno test --parallel` runs the suite's
 * files side by side in one process, so their allocations would count.
 *
 * {@linkcode ownProcessTest} registers, in the suite, a test that starts
 * `deno test` on the same file filtered to exactly this test, with
 * `VICO_OWN_PROCESS` naming it; in that child the body itself runs, and
 * says so in a file the parent reads (a filter that matched another test
 * does not pass).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const OWN = "VICO_OWN_PROCESS";
const OWN_TOKEN = "VICO_OWN_PROCESS_TOKEN";

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/**
 * Registers `fn` as the test `name` run in a process of its own.
 *
 * @param url The calling file's `import.meta.url`.
 * @param name The test's name (unique within the file).
 * @param fn The test.
 */
export function ownProcessTest(url: string, name: string, fn: () => Promise<void>): void {
  const token = Deno.env.get(OWN_TOKEN);
  if (Deno.env.get(OWN) === name && token !== undefined) {
    Deno.test(name, async () => {
      await fn();
      Deno.writeTextFileSync(token, "ran"); // the parent's proof that this body, not another test, passed
    });
    return;
  }
  Deno.test(`${name} (a process of its own)`, async () => {
    const file = fileURLToPath(url);
    const token = Deno.makeTempFileSync({ prefix: "own-process-" });
    const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
    const out = await new Deno.Command(Deno.execPath(), {
      // The name exactly, as a pattern (a bare filter is a substring, or a pattern if it looks like one).
      args: ["test", "-q", "--config", config, "-P=test", "--no-check", "--filter", `/^${escapeRegExp(name)}$/`, file],
      env: { NO_COLOR: "1", [OWN]: name, [OWN_TOKEN]: token },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const ran = Deno.readTextFileSync(token);
    Deno.removeSync(token);
    assert.equal(out.code, 0, said);
    assert.match(said, /ok \| 1 passed \| 0 failed/, said);
    assert.equal(ran, "ran", `the test's body did not run in the child:\n${said}`);
  });
}
