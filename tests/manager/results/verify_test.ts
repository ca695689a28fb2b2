import assert from "node:assert/strict";
import { join } from "node:path";
import { JOURNAL_FILE } from "../../../manager/results/results_store.ts";
import { verifyResults } from "../../../manager/results/verify.ts";
import { tempDir } from "../../helpers/journal.ts";

const job = (key: string) => JSON.stringify({ type: "job", key, status: 0, output: null, size: 0 }) + "\n";

Deno.test("verifyResults: a torn last line, with or without its newline, is a torn tail and not a problem", async () => {
  for (const torn of ['{"type":"job","ke', '{"type":"job","ke\n']) {
    await using dir = await tempDir();
    await Deno.writeTextFile(join(dir.path, JOURNAL_FILE), job("a") + job("b") + torn);
    const report = await verifyResults(dir.path);
    assert.deepEqual([report.records, report.problems, report.tornTail], [2, [], true], JSON.stringify(torn));
  }
});

Deno.test("verifyResults: damage before the last line is a problem at its line, and nothing after it is read", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, JOURNAL_FILE), job("a") + "{oops\n" + job("c"));
  const report = await verifyResults(dir.path);
  assert.deepEqual(report.problems, [{ line: 2, path: JOURNAL_FILE, problem: "record does not parse" }]);
  assert.equal(report.records, 1);
  assert.equal(report.tornTail, false);
});

Deno.test("verifyResults: one settlement per key, one more after each reopen; anything else is a problem at its line", async () => {
  const reopen = (key: string) =>
    JSON.stringify({ type: "reopen", key, line: 1, status: 1, host: "h", attempt: 1 }) + "\n";
  await using good = await tempDir();
  await Deno.writeTextFile(join(good.path, JOURNAL_FILE), job("a") + reopen("a") + job("a") + reopen("a") + job("a"));
  assert.deepEqual((await verifyResults(good.path)).problems, []);
  await using bad = await tempDir();
  await Deno.writeTextFile(join(bad.path, JOURNAL_FILE), job("a") + job("b") + job("a") + reopen("c") + reopen("b"));
  assert.deepEqual((await verifyResults(bad.path)).problems, [
    { line: 3, path: JOURNAL_FILE, problem: "settles a a second time, with no reopen record before it" },
    { line: 4, path: JOURNAL_FILE, problem: "reopens c, which is not settled" },
  ]);
});
