/**
 * `manager --resume-failed` over real processes (issue 15): a run with
 * failing jobs, the cause fixed, only those jobs run again, their earlier
 * attempts kept byte for byte; a restart in the middle of such a run; and a
 * results directory with no failure, where it does nothing and says so.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess } from "../helpers/entry_process.ts";
import { readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import type { JobRecord } from "../../manager/results/results_store.ts";

/** Runs `manager ARGS` in `cwd`, to its end. */
async function manager(args: string[], cwd: string) {
  await using p = EntryProcess.spawn("manager.ts", args, { cwd });
  const status = await p.exit();
  return { code: status.code, stdout: p.stdout, stderr: p.stderr };
}

/** The only ad-hoc results directory under `cwd`. */
function onlyRun(cwd: string): string {
  const runs = [...Deno.readDirSync(join(cwd, "vico-results"))].map((e) => e.name);
  assert.equal(runs.length, 1, `one ad-hoc run: ${runs}`);
  return join(cwd, "vico-results", runs[0]);
}

/** Each key's journal story (`job:1 reopen job:0`), in the order of the list's lines. */
function stories(results: string): Map<string, string> {
  const byKey = new Map<string, { line: number; story: string[] }>();
  for (const r of readJournal(results)) {
    if (r.type !== "job" && r.type !== "reopen") continue;
    const entry = byKey.get(r.key) ?? { line: r.line, story: [] };
    entry.story.push(r.type === "job" ? `job:${r.status}` : "reopen");
    byKey.set(r.key, entry);
  }
  return new Map([...byKey].sort((a, b) => a[1].line - b[1].line).map(([k, e]) => [k, e.story.join(" ")]));
}

Deno.test("manager --resume-failed re-runs only the failed jobs of the latest run, keeping their earlier attempts", async () => {
  await using dir = await tempDir();
  for (const name of ["a", "c"]) await Deno.writeTextFile(join(dir.path, `${name}.in`), `${name} is here\n`);
  const log = join(dir.path, "runs.log");
  const template = ["-k", `echo {} >> ${log}; cat {}.in`, ":::", "a", "b", "c", "d"];
  const first = await manager(template, dir.path);
  assert.equal(first.code, 1, first.stderr);
  assert.match(first.stderr, /2 succeeded, 2 failed/);
  const results = onlyRun(dir.path);
  const failedBefore = readRecords(results).filter((r) => r.status !== 0);
  assert.deepEqual(failedBefore.map((r) => r.line), [2, 4]);
  const earlier = failedBefore.map((r) => ({ output: r.output!, bytes: readOutput(results, r) }));
  assert.ok(earlier.every((e) => e.bytes.length > 0), "the failures wrote something (cat's complaint)");

  // The cause fixed: the inputs are there now.
  for (const name of ["b", "d"]) await Deno.writeTextFile(join(dir.path, `${name}.in`), `${name} is fixed\n`);
  const again = await manager(["--resume-failed", ...template], dir.path);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /re-running 2 failed or lost job\(s\)/);
  assert.equal(again.stdout, "b is fixed\nd is fixed\n", "only the re-run jobs print, in order");
  const ran = Deno.readTextFileSync(log).trim().split("\n");
  assert.deepEqual([ran.slice(0, 4).sort(), ran.slice(4).sort()], [["a", "b", "c", "d"], ["b", "d"]], "only those ran");
  assert.equal(onlyRun(dir.path), results, "the same results directory, no new one");

  // The journal: each re-run key settled, reopened, settled once more; the others once.
  assert.deepEqual(
    [...stories(results).values()],
    ["job:0", "job:1 reopen job:0", "job:0", "job:1 reopen job:0"],
  );
  const reruns = readRecords(results).slice(4).sort((a, b) => a.line - b.line);
  for (const [i, r] of reruns.entries()) {
    assert.equal(r.attempt, 2, "attempt numbers go on");
    assert.equal(r.output, `out/${r.key}.2.out`, "the re-run's output has a name of its own");
    assert.notEqual(r.output, earlier[i].output);
  }
  for (const e of earlier) {
    assert.deepEqual(Deno.readFileSync(join(results, e.output)), e.bytes, "earlier attempt kept byte for byte");
  }
  const verify = await manager(["verify", results], dir.path);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const report = await manager(["report", results, "--json"], dir.path);
  assert.equal(report.code, 0, report.stderr);
  const summary = JSON.parse(report.stdout);
  assert.deepEqual(
    [summary.jobs, summary.ok, summary.failed, summary.retried],
    [4, 4, 0, 2],
    "the report counts the earlier failures as past attempts",
  );
});

Deno.test("manager --resume-failed: a restart in the middle finishes the rest, one settlement per key after its reopen", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  const results = join(dir.path, "jobs.results");
  const log = join(dir.path, "runs.log");
  const gate = join(dir.path, "go");
  // Job x fails until x.ok exists; in the re-run, every job but the first waits for the gate.
  const job = (x: string) =>
    `echo ${x} >> ${log}; [ -e ${x}.ok ] || exit 7; ` +
    `while [ ${x} != a ] && [ ! -e ${gate} ]; do sleep 0.05; done; echo ${x} ok`;
  await Deno.writeTextFile(list, ["a", "b", "c"].map(job).join("\n") + "\nfalse\necho fine\n");
  const first = await manager(["--jobs", list, "--local", "1"], dir.path);
  assert.equal(first.code, 1, first.stderr);
  assert.equal(readRecords(results).filter((r) => r.status !== 0).length, 4);

  for (const x of ["a", "b", "c"]) await Deno.writeTextFile(join(dir.path, `${x}.ok`), "");
  {
    // Killed (-9) once the first re-run job has settled, the others waiting at the gate.
    await using interrupted = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "1", "--resume-failed"], {
      cwd: dir.path,
    });
    await waitUntil(() => readRecords(results).length === 6, () => interrupted.stderr);
    interrupted.kill("SIGKILL");
    await interrupted.exit();
  }
  const reopens = readJournal(results).filter((r) => r.type === "reopen");
  assert.equal(reopens.length, 4, "every failed job was reopened before any ran");
  await Deno.writeTextFile(gate, "");

  const resumed = await manager(["--jobs", list, "--local", "1", "--resume-failed"], dir.path);
  assert.equal(resumed.code, 1, `false still fails: ${resumed.stderr}`);
  assert.match(resumed.stderr, /no failed or lost job recorded in .*; resuming the 3 job\(s\) not settled yet/);
  const third = await manager(["--jobs", list, "--local", "1", "--resume-failed"], dir.path);
  assert.equal(third.code, 1, third.stderr);
  assert.match(third.stderr, /re-running 1 failed or lost job\(s\)/, "only `false`, settled again, is reopened again");
  const story = stories(results);
  const keyOf = (line: number) => readRecords(results).find((r: JobRecord) => r.line === line)!.key;
  assert.equal(story.get(keyOf(1)), "job:7 reopen job:0", "a: settled in the interrupted run, not run again");
  assert.equal(story.get(keyOf(2)), "job:7 reopen job:0", "b: one settlement after its one reopen");
  assert.equal(story.get(keyOf(3)), "job:7 reopen job:0");
  assert.equal(story.get(keyOf(4)), "job:1 reopen job:1 reopen job:1", "false: reopened each time it failed");
  assert.equal(story.get(keyOf(5)), "job:0", "a job that succeeded is never touched");
  const ran = Deno.readTextFileSync(log).trim().split("\n");
  assert.deepEqual(ran.slice(0, 3), ["a", "b", "c"]);
  assert.equal(ran.filter((x) => x === "a").length, 2, "a ran once more, in the interrupted run only");
  const verify = await manager(["verify", results], dir.path);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});

Deno.test("manager --resume-failed on results with no failure exits 0, runs nothing and says so", async () => {
  await using dir = await tempDir();
  const log = join(dir.path, "runs.log");
  const template = [`echo {} >> ${log}`, ":::", "x", "y"];
  const first = await manager(template, dir.path);
  assert.equal(first.code, 0, first.stderr);
  const results = onlyRun(dir.path);
  const before = Deno.readTextFileSync(join(results, "journal.jsonl"));
  const again = await manager(["--resume-failed", ...template], dir.path);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /no failed or lost job recorded in .*: nothing to re-run/);
  assert.equal(again.stdout, "");
  assert.deepEqual(Deno.readTextFileSync(log).trim().split("\n").sort(), ["x", "y"], "nothing ran");
  assert.equal(readJournal(results).filter((r) => r.type === "reopen").length, 0);
  assert.ok(Deno.readTextFileSync(join(results, "journal.jsonl")).startsWith(before));

  const nowhere = await manager(["--resume-failed=no-such-dir", ...template], dir.path);
  assert.equal(nowhere.code, 2, "a directory with no journal is a usage error");
  assert.match(nowhere.stderr, /--resume-failed: no results journal in no-such-dir/);
});

/** Polls `done` until it holds (30 s at most). */
async function waitUntil(done: () => boolean, context: () => string): Promise<void> {
  const until = Date.now() + 30_000;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out; stderr:\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
