/**
 * Black-hole runners: a runner whose jobs all fail at once (a broken node)
 * beside healthy ones is quarantined, and every job still succeeds.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, ROOT, RUN_FLAGS, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readRecords, tempDir } from "../helpers/journal.ts";

Deno.test("manager: a black-hole runner is quarantined; its failed jobs run elsewhere; every job succeeds", async () => {
  await using dir = await tempDir();
  const n = 120;
  const jobs = Array.from({ length: n }, (_, i) => `date > /dev/null && sleep 0.02 && echo ok-${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using healthy = startRunner(port, ["--workers", "2", "--name", "healthy"]);
  // Wait for the healthy runner's first results: the evidence that jobs can succeed.
  for (let i = 0; i < 100 && readRecords(results).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
  // A node whose environment is broken: no command can be found.
  await using hole = EntryProcess.spawnProgram(Deno.execPath(), [
    ...RUN_FLAGS,
    ROOT + "runner.ts",
    "--manager",
    `127.0.0.1:${port}`,
    "--workers",
    "2",
    "--name",
    "blackhole",
  ], { env: { PATH: "/nonexistent" } });
  const [ms] = await Promise.all([manager.exit(), healthy.exit(), hole.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, n, "every job recorded once");
  assert.ok(records.every((r) => r.status === 0), "and every one succeeded");
  assert.ok(records.every((r) => r.host === "healthy"));
  assert.ok(records.every((r) => r.attempt <= 2), "the black hole's attempts were not spent");
  assert.match(
    manager.stderr,
    /Quarantined blackhole for 60s: its last 5 jobs failed \(exit 127\) within 500 ms while other runners succeed/,
  );
});

Deno.test("manager: jobs that fail fast everywhere are still recorded as failed", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(
    dir.path,
    Array.from({ length: 12 }, (_, i) => `exit ${i % 2 + 1}`),
  );
  await using _m = manager;
  await using a = startRunner(port, ["--name", "a"]);
  await using b = startRunner(port, ["--name", "b"]);
  const [ms] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
  assert.equal(ms.code, 1);
  const records = readRecords(results);
  assert.equal(records.length, 12);
  assert.ok(records.every((r) => r.status !== 0));
  assert.doesNotMatch(manager.stderr, /Quarantined/);
});

Deno.test("manager: a fast failure left at the end of the run is recorded at once, not held for the quarantine", async () => {
  await using dir = await tempDir();
  const { manager, results } = await startManagerOn(dir.path, ["sleep 0.3", "true", "exit 3"], ["--local", "2"]);
  await using _m = manager;
  const status = await manager.exit();
  const exited = Date.now();
  assert.equal(status.code, 1, manager.stderr);
  const records = readRecords(results);
  assert.deepEqual(records.map((r) => r.status).sort(), [0, 0, 3]);
  const failed = records.find((r) => r.status === 3)!;
  // Held as a suspect, it would wait out the 5 s hold before being recorded and the run could end.
  const lag = exited - Date.parse(failed.start);
  assert.ok(lag < 3000, `the manager ended ${lag} ms after handing out the failing job`);
});

Deno.test("manager: a healthy fleet where every other job fails legitimately quarantines nobody; each job runs once", async () => {
  await using dir = await tempDir();
  const runs = join(dir.path, "runs.log");
  // Half of the list fails at once for its own reasons (a `grep -q` that finds nothing, a `test -f` of a missing file).
  const jobs = Array.from({ length: 60 }, (_, i) => `echo ${i} >> ${runs} && test ${i % 2} -eq 0`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using a = startRunner(port, ["--name", "a"]);
  await using b = startRunner(port, ["--name", "b"]);
  const [ms] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
  assert.equal(ms.code, 1, manager.stderr);
  assert.doesNotMatch(manager.stderr, /Quarantined/);
  const records = byLine(readRecords(results));
  assert.equal(records.size, 60, "each job recorded once");
  for (const [line, r] of records) {
    assert.equal(r.status === 0, (line - 1) % 2 === 0, `line ${line}: status ${r.status}`);
  }
  const ran = Deno.readTextFileSync(runs).split("\n").filter((l) => l !== "").map(Number).sort((x, y) => x - y);
  assert.deepEqual(ran, Array.from({ length: 60 }, (_, i) => i), "each job, each failure included, ran once");
  const hosts = new Set([...records.values()].map((r) => r.host));
  assert.deepEqual([...hosts].sort(), ["a", "b"], "both runners did work");
});
