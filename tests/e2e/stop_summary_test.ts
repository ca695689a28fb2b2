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
