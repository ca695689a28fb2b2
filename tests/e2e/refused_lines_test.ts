/**
 * Limits people hit (issue 15): a line that is not valid UTF-8 (a Latin-1
 * file name from `find`) or a command over the 64 KiB protocol line is
 * refused alone, named with its line number, while the rest of the list
 * runs; the run then exits 1. For a job file, `--jobs -`, a template's
 * arguments from a file or stdin, and commands on stdin.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, ROOT, RUN_FLAGS } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

const enc = new TextEncoder();
/** `echo caf` + é in Latin-1 (one byte 0xe9): not UTF-8. */
const LATIN1 = new Uint8Array([...enc.encode("caf"), 0xe9]);
const LONG = "y".repeat(70_000);

/** Runs `manager ARGS < stdin` (raw bytes) in `cwd`, to its end. */
async function manager(args: string[], cwd: string, stdin: Uint8Array = new Uint8Array()) {
  const input = join(cwd, ".stdin");
  await Deno.writeFile(input, stdin);
  const argv = [...RUN_FLAGS, ROOT + "manager.ts", ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`);
  await using p = EntryProcess.spawnProgram("/bin/sh", ["-c", `exec '${Deno.execPath()}' ${argv.join(" ")} < .stdin`], {
    cwd,
  });
  const status = await p.exit();
  return { code: status.code, stdout: p.stdout, stderr: p.stderr };
}

const lines = (...parts: (string | Uint8Array)[]) =>
  new Uint8Array(parts.flatMap((p) => [...(typeof p === "string" ? enc.encode(p) : p), 0x0a]));

Deno.test("a job file: a line not UTF-8 and one over 64 KiB are refused alone with their line numbers; the rest run; exit 1", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeFile(
    list,
    lines("echo one", new Uint8Array([...enc.encode("echo "), ...LATIN1]), `echo ${LONG}`, "echo four"),
  );
  const run = await manager(["--jobs", list, "--local", "2"], dir.path);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /jobs\.txt line 2 refused, not run: not valid UTF-8/);
  assert.match(run.stderr, /jobs\.txt line 3 refused, not run: job is too long for a 65536-byte protocol line/);
  assert.match(run.stderr, /2 line\(s\) refused and not run/);
  const records = readRecords(join(dir.path, "jobs.results"));
  assert.deepEqual(records.map((r) => [r.line, r.status]).sort(), [[1, 0], [4, 0]], "the rest ran, with their lines");
  assert.match(run.stdout, /2 succeeded, 0 failed/);

  // The same list again: nothing new to run, and the refusals are said again (still exit 1).
  const again = await manager(["--jobs", list, "--local", "2"], dir.path);
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /2 line\(s\) refused and not run/);
  assert.equal(readRecords(join(dir.path, "jobs.results")).length, 2);
});

Deno.test("--jobs - and commands on stdin: a line not UTF-8 is refused alone, the rest run; exit 1", async () => {
  await using dir = await tempDir();
  const input = lines("echo a", new Uint8Array([...enc.encode("echo "), ...LATIN1]), "echo b");
  for (const args of [["--jobs", "-", "--local", "1", "-k"], ["-j", "1", "-k"]]) {
    const run = await manager(args, dir.path, input);
    assert.equal(run.code, 1, `${args}: ${run.stderr}`);
    assert.equal(run.stdout, "a\nb\n", `${args}: the rest printed`);
    assert.match(run.stderr, /line 2 refused, not run: not valid UTF-8/, `${args}`);
    assert.match(run.stderr, /1 line\(s\) refused and not run/);
  }
});

Deno.test("a template: an argument not UTF-8 (find's Latin-1 name) and a command over 64 KiB are refused alone; exit 1", async () => {
  await using dir = await tempDir();
  const names = lines("a.txt", LATIN1, "b.txt", LONG, "c.txt");
  const run = await manager(["-k", "echo", "got", "{}"], dir.path, names);
  assert.equal(run.code, 1, run.stderr);
  assert.equal(run.stdout, "got a.txt\ngot b.txt\ngot c.txt\n");
  assert.match(run.stderr, /argument source 1 line 2 refused, not run: not valid UTF-8/);
  assert.match(
    run.stderr,
    /job 3 \(source 1 line 4\) refused, not run: job is too long for a 65536-byte protocol line/,
  );
  assert.match(run.stderr, /2 line\(s\) refused and not run/);
  const file = join(dir.path, "args.txt");
  await Deno.writeFile(file, names);
  const dry = await manager(["--dry-run", "echo", "{}", "::::", file], dir.path);
  assert.equal(dry.code, 1, "a dry run says what would be refused, and exits 1");
  assert.equal(dry.stdout, "echo a.txt\necho b.txt\necho c.txt\n");
  assert.match(dry.stderr, /2 line\(s\) refused and not run/);
});

Deno.test("a list whose every line is refused runs nothing and exits 1", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeFile(list, lines(new Uint8Array([...enc.encode("echo "), ...LATIN1])));
  const run = await manager(["--jobs", list, "--local", "1"], dir.path);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /jobs\.txt line 1 refused, not run: not valid UTF-8/);
  assert.deepEqual(readRecords(join(dir.path, "jobs.results")), []);
});
