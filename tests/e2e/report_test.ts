/**
 * End to end: `manager report` on the results directory of a real run.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";
import { digestResults, type RunReport } from "../../manager/observe/report.ts";
import { verifyResults } from "../../manager/results/verify.ts";
import type { EmbeddedRun } from "../../manager/observe/status_page.ts";

/** Runs `manager report ARGS` to the end. */
async function report(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = EntryProcess.spawn("manager.ts", ["report", ...args]);
  await using _p = p;
  const { code } = await p.exit();
  return { code, stdout: p.stdout, stderr: p.stderr };
}

Deno.test("manager report: a finished run's summary as text, JSON and a self-contained HTML timeline", async () => {
  await using dir = await tempDir();
  // 6 jobs ok, one that fails twice (--retries 1: one retried attempt), one exit 3 once retried too.
  const jobs = [
    ...Array.from({ length: 6 }, (_, i) => `sleep 0.${i % 3 + 1}; echo ${i}`),
    "sleep 0.2; exit 7",
    "sleep 0.4; echo slow",
  ];
  const { manager, port, results } = await startManagerOn(dir.path, jobs, [
    "--retries",
    "1",
    "--blackhole-streak",
    "0",
  ]);
  await using _m = manager;
  await using a = startRunner(port, ["--workers", "2", "--name", "node-a"]);
  await using b = startRunner(port, ["--workers", "2", "--name", "node-b"]);
  const [ms] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
  assert.equal(ms.code, 1, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 8);

  const text = await report([results]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /1 run\(s\) of .*jobs\.txt/);
  assert.match(
    text.stdout,
    /jobs: 8 settled \(the last run's list has 8\): 7 ok, 1 failed, 0 lost; 1 failed attempt\(s\) retried, at most 2 attempt\(s\) per job/,
  );
  assert.match(text.stdout, /wall time: /);
  assert.match(text.stdout, /^\s+node-a\s+\d+\s+\d+\s+\d+\s+\S+$/m);
  assert.match(text.stdout, /^\s+node-b\s+\d+\s+\d+\s+\d+\s+\S+$/m);
  assert.ok(text.stdout.includes("exit status: 0×7  7×1"), text.stdout);
  assert.match(text.stdout, /slowest:\n\s+0\.\d\ds\s+line \d/);

  const json = await report([results, "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const r = JSON.parse(json.stdout) as RunReport;
  assert.deepEqual([r.jobs, r.ok, r.failed, r.lost, r.retried, r.maxAttempt], [8, 7, 1, 0, 1, 2]);
  assert.equal(r.hosts.reduce((n, h) => n + h.jobs, 0), 8);
  assert.deepEqual(r.hosts.map((h) => h.host).sort(), ["node-a", "node-b"]);
  const wall = (Date.parse(records.map((x) => x.end).sort().at(-1)!) - Date.parse(r.first!)) / 1000;
  assert.ok(Math.abs(r.wallSeconds - wall) < 1e-9);
  assert.ok(r.hosts.every((h) => h.busySeconds > 0 && h.busySeconds <= r.wallSeconds * 2 + 1e-9));

  const out = join(dir.path, "report.html");
  const html = await report([results, "--html", out]);
  assert.equal(html.code, 0, html.stderr);
  assert.match(html.stdout, /timeline: .*report\.html/);
  const page = await Deno.readTextFile(out);
  assert.ok(!/(src|href)="https?:/.test(page), "no external assets");
  const embedded = JSON.parse(
    page.match(/<script id="vico-data" type="application\/json">(.*?)<\/script>/s)![1],
  ) as EmbeddedRun;
  assert.equal(embedded.timeline.jobs.length, 9, "8 jobs and 1 retried attempt");
  for (const host of embedded.timeline.hosts) assert.ok(host.lanes >= 1 && host.lanes <= 2, JSON.stringify(host));
  assert.equal(embedded.report.jobs, 8);
});

Deno.test("manager report: a directory without a journal is a usage error (exit 2)", async () => {
  await using dir = await tempDir();
  const r = await report([dir.path]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /manager report: cannot read .*: no journal\.jsonl there/);
  const none = await report([]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /expected one RESULTS_DIR/);
});

Deno.test("manager report: counts jobs stopped by --timeout as timed out, in text and JSON", async () => {
  await using dir = await tempDir();
  const at = (s: number) => new Date(Date.parse("2026-01-01T00:00:00Z") + s * 1000).toISOString();
  const record = (line: number, status: number, more: Record<string, unknown> = {}) => ({
    type: "job",
    key: `k${line}`,
    line,
    command: `sleep ${line}`,
    status,
    host: "node",
    start: at(0),
    end: at(line),
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
    ...more,
  });
  const journal = [
    { type: "run", started: at(0), source: "jobs.txt", jobs: 3, pid: 1 },
    record(1, 0),
    record(2, 143, { timedOut: true }),
    record(3, 137, { timedOut: true }),
  ];
  await Deno.writeTextFile(join(dir.path, "journal.jsonl"), journal.map((r) => JSON.stringify(r) + "\n").join(""));
  const text = await report([dir.path]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /jobs: 3 settled \(the last run's list has 3\): 1 ok, 0 failed, 2 timed out, 0 lost;/);
  const json = await report([dir.path, "--json"]);
  const r = JSON.parse(json.stdout) as RunReport;
  assert.deepEqual([r.jobs, r.ok, r.failed, r.timedOut, r.lost], [3, 1, 0, 2, 0]);
  assert.deepEqual(r.hosts.map((h) => [h.host, h.timedOut]), [["node", 2]]);
});

Deno.test("manager report and verify while a manager appends to the same journal: no problem, and nothing read is cut or rewritten", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 3000 }, (_, i) => `echo ${"output ".repeat(i % 7)}${i}`);
  const { manager, results } = await startManagerOn(dir.path, jobs, ["--local", "4"]);
  await using _m = manager;
  const journal = join(results, "journal.jsonl");
  let ended = false;
  const exited = manager.exit().finally(() => ended = true);
  let reads = 0, torn = 0, seen = new Uint8Array();
  while (!ended) {
    const [verified, digest] = await Promise.all([verifyResults(results), digestResults(results)]);
    assert.deepEqual(verified.problems, [], `read ${reads}`);
    if (verified.tornTail) torn++;
    assert.ok(digest.report().jobs <= jobs.length);
    // Nothing read is ever cut or rewritten: each read's journal starts with the last one's.
    const now = await Deno.readFile(journal);
    assert.ok(now.length >= seen.length, "the journal never shrinks");
    assert.deepEqual(now.subarray(0, seen.length), seen, "the journal read before is unchanged");
    seen = now;
    reads++;
  }
  assert.equal((await exited).code, 0, manager.stderr);
  // One `manager verify` process on the finished run, and the record count.
  const verify = EntryProcess.spawn("manager.ts", ["verify", results]);
  await using _v = verify;
  assert.equal((await verify.exit()).code, 0, verify.stdout + verify.stderr);
  assert.equal(readRecords(results).length, jobs.length);
  assert.ok(reads >= 3, `read ${reads} times while it ran (${torn} with a line being written)`);
});
