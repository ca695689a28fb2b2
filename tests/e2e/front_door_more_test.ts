/**
 * Issue 15's "Must hold" items that other e2e files leave out: `--print`
 * for a job file, `--local` with no number, commands on stdin with neither
 * a template nor `--jobs` (no Deno permission message reaches the user), and
 * `--halt soon,fail=N%`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

/** Runs `manager ARGS` in `cwd`, to its end. */
async function manager(args: string[], cwd: string, stdin?: string) {
  await using p = EntryProcess.spawn("manager.ts", args, { cwd, ...(stdin === undefined ? {} : { stdin }) });
  const status = await p.exit();
  return { code: status.code, stdout: p.stdout, stderr: p.stderr };
}

Deno.test("manager --jobs FILE --print prints each job's output on stdout, the summary on stderr", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo one\necho two\n");
  const run = await manager(["--jobs", list, "--local", "1", "--print"], dir.path);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split("\n").sort(), ["one", "two"]);
  assert.match(run.stderr, /2 succeeded, 0 failed/);
});

Deno.test("manager --local with no number runs one worker per core", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  for (const args of [["--jobs", list, "--local"], ["--local", "--jobs", list]]) {
    const run = await manager(args, dir.path);
    assert.equal(run.code, 0, `${args}: ${run.stderr}`);
  }
  const cores = navigator.hardwareConcurrency;
  const slots = await manager(
    ["--local", "--", "echo", "{%}", ":::", ...Array.from({ length: 40 }, (_, i) => `${i}`)],
    dir.path,
  );
  assert.equal(slots.code, 0, slots.stderr);
  const seen = new Set(slots.stdout.trim().split("\n").map(Number));
  assert.ok([...seen].every((s) => s >= 1 && s <= cores), `slots within 1..${cores}: ${[...seen]}`);
});

Deno.test("commands on stdin with no template and no --jobs run, and no Deno permission message reaches the user", async () => {
  await using dir = await tempDir();
  const run = await manager(["-k", "-j", "2"], dir.path, "echo a\n# a comment\necho b\n");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "a\nb\n");
  assert.doesNotMatch(run.stderr, /NotCapable|--allow-|Requires .* access/);
  assert.equal([...Deno.readDirSync(join(dir.path, "vico-results"))].length, 1, "an ad-hoc run of its own");
});

Deno.test("manager --halt soon,fail=50% stops starting jobs once half of all failed, and exits non-zero", async () => {
  await using dir = await tempDir();
  const codes = ["0", "5", "6", "7", "0", "0"];
  const run = await manager(["-j", "1", "--halt", "soon,fail=50%", "exit", "{}", ":::", ...codes], dir.path);
  assert.notEqual(run.code, 0, run.stderr);
  assert.match(run.stderr, /halting \(soon\)/);
  const results = [...Deno.readDirSync(join(dir.path, "vico-results"))][0].name;
  assert.equal(
    readRecords(join(dir.path, "vico-results", results)).length,
    4,
    "no job started after the third failure",
  );
});
