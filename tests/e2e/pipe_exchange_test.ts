/**
 * The pipelined text exchange (`pipe=1`) between a real manager and real
 * runner processes over loopback: a list runs with every result recorded
 * once, and a runner killed while results are unacknowledged loses nothing
 * and records nothing twice once it comes back with `--persist`.
 */

import assert from "node:assert/strict";
import { byLine, readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { startManagerOn, startRunner } from "../helpers/entry_process.ts";

const dec = new TextDecoder();

Deno.test("runner and manager pipe=1: a list runs pipelined; each job recorded once with its output", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 200 }, (_, i) => `echo out-${i}; exit ${i % 7 === 0 ? 3 : 0}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "4", "--name", "piped", "--log-level", "info"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 1, "some jobs fail: " + manager.stderr); // exit 3 jobs are failures
  assert.equal(rs.code, 0, runner.stderr);
  assert.match(runner.stderr, /Connected to .* \(pulse \d+s, pipelined\)/);
  const records = readRecords(results);
  assert.equal(records.length, 200);
  const lines = byLine(records);
  for (let i = 0; i < 200; i++) {
    const r = lines.get(i + 1)!;
    assert.equal(r.status, i % 7 === 0 ? 3 : 0);
    assert.equal(dec.decode(readOutput(results, r)), `out-${i}\n`);
  }
});

Deno.test("runner --persist pipe=1: SIGKILL while results wait for their acks, restart: nothing lost, nothing twice", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const count = 400;
  const jobs = Array.from({ length: count }, (_, i) => `echo out-${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--pulse", "1s", "--lease", "30s"]);
  await using _m = manager;
  const args = ["--persist", "--state-dir", state.path, "--workers", "4", "--name", "svc", "--retry-max", "1s"];
  const first = startRunner(port, args);
  await using _first = first;
  // Kill it in full flow: results are going out and being acknowledged all the time.
  const deadline = Date.now() + 60_000;
  while (readRecords(results).length < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  first.kill("SIGKILL");
  await first.exit();
  const before = readRecords(results).length;
  assert.ok(before >= 40 && before < count, `killed mid-run (${before} recorded)`);
  await using second = startRunner(port, args);
  const ms = await manager.exit();
  assert.equal(ms.code, 0, manager.stderr);
  // A --persist runner is a service: it waits for the next manager until told to stop.
  second.kill("SIGTERM");
  assert.equal((await second.exit()).code, 0, second.stderr);
  const records = readRecords(results);
  assert.equal(records.length, count, "each job recorded exactly once");
  const lines = byLine(records);
  assert.equal(lines.size, count);
  for (let i = 0; i < count; i++) assert.equal(dec.decode(readOutput(results, lines.get(i + 1)!)), `out-${i}\n`);
  assert.equal(records.filter((r) => r.lost !== undefined).length, 0, "nothing given up as lost");
  assert.equal(readJournal(results).filter((r) => r.type === "job").length, count, "no second job record");
});

Deno.test("runner -w2 pipe=1: a job retried after its runner's other worker was told FINO runs again on that runner", async () => {
  // One job and two workers: the idle worker's PETO finds the queue empty while the job runs. Were it answered
  // FINO, the job's retry (--retries) would find the runner gone and the run would never end.
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["sleep 0.3; exit 3"], ["--retries", "2"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2"]);
  const ended = Promise.all([manager.exit(), runner.exit()]);
  const timer = setTimeout(() => {
    manager.kill("SIGKILL");
    runner.kill("SIGKILL");
  }, 20_000);
  const [ms, rs] = await ended.finally(() => clearTimeout(timer));
  assert.equal(ms.code, 1, "the job fails every time (not killed by the deadline): " + manager.stderr);
  assert.equal(rs.code, 0, runner.stderr);
  const journal = readJournal(results);
  assert.equal(journal.filter((r) => r.type === "attempt").length, 3, "three attempts: " + JSON.stringify(journal));
  const records = readRecords(results);
  assert.equal(records.length, 1);
  assert.equal(records[0].attempt, 3);
  assert.equal(records[0].status, 3);
});

Deno.test("runner -w1 pipe=1 under --halt now,fail=1 on short jobs: after the failing job the worker starts nothing (no job asked ahead)", async () => {
  await using dir = await tempDir();
  const ran = `${dir.path}/ran`;
  const failing = 30;
  const jobs = Array.from({ length: 200 }, (_, i) => i + 1 === failing ? "exit 7" : `echo ${i + 1} >> ${ran}`);
  // No black-hole rule: a fast failure held as a suspect is judged later, and a job or two more may start meanwhile.
  const { manager, port } = await startManagerOn(dir.path, jobs, ["--halt", "now,fail=1", "--blackhole-streak", "0"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "1"]);
  assert.equal((await manager.exit(30_000)).code, 7, manager.stderr);
  await runner.exit(30_000);
  const lines = (await Deno.readTextFile(ran)).trim().split("\n").map(Number);
  assert.deepEqual(
    lines,
    Array.from({ length: failing - 1 }, (_, i) => i + 1),
    "jobs 1-29 and nothing after the failure",
  );
});
