/**
 * The summary a manager prints when it is stopped says what happened: how
 * many jobs of the list ran, how many are left, and how to finish them.
 */

import assert from "node:assert/strict";
import { startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

Deno.test("formatSummary after SIGINT: says how many of the list ran and how many are left, not that all ran", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 40 }, (_, i) => `sleep 0.05; echo ${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--stop-timeout", "5s"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--name", "r"]);
  for (let i = 0; i < 200 && readRecords(results).length < 5; i++) await new Promise((r) => setTimeout(r, 20));
  manager.kill("SIGINT");
  assert.equal((await manager.exit()).code, 130, manager.stderr);
  await runner.exit();
  const ran = readRecords(results).length;
  assert.ok(ran >= 5 && ran < 40, `${ran} recorded`);
  assert.match(manager.stdout, new RegExp(`^vico: ${ran} of 40 run in [0-9.]+s .*, ${40 - ran} left; run again`, "m"));
  assert.doesNotMatch(manager.stdout, /40 job\(s\) run/);
});

Deno.test("SIGHUP and SIGQUIT stop the manager and the runner as SIGTERM does: running jobs finish and are recorded, none left behind", async () => {
  for (const sig of ["SIGHUP", "SIGQUIT"] as const) {
    await using dir = await tempDir();
    const marks = `${dir.path}/marks`;
    // Each job notes its start and its end: a job orphaned by the signal would note no end before the check.
    const jobs = Array.from(
      { length: 6 },
      (_, i) => `echo start >> ${marks}; sleep 0.6; echo end >> ${marks}; echo ${i}`,
    );
    const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--stop-timeout", "10s"]);
    await using _m = manager;
    await using runner = startRunner(port, ["--name", "r", "--workers", "2"]);
    for (let i = 0; i < 300; i++) {
      if ((await Deno.readTextFile(marks).catch(() => "")).includes("start")) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // The runner first (a dropped ssh session): it finishes its jobs, reports them, and leaves.
    runner.kill(sig);
    const code = sig === "SIGHUP" ? 129 : 131;
    assert.equal((await runner.exit()).code, 0, `${sig}: ${runner.stderr}`);
    const text = await Deno.readTextFile(marks);
    assert.equal(text.match(/start/g)?.length, text.match(/end/g)?.length, `${sig}: every started job ended: ${text}`);
    const ran = readRecords(results).length;
    assert.ok(ran >= 1 && ran < 6, `${sig}: ${ran} recorded`);
    manager.kill(sig);
    assert.equal((await manager.exit()).code, code, `${sig}: ${manager.stderr}`);
    assert.match(manager.stdout, new RegExp(`^vico: ${ran} of 6 run in .*, ${6 - ran} left; run again`, "m"));
  }
});
