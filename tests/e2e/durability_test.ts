/**
 * What survives: resumes by content key, verification, retries, lost jobs,
 * graceful stops.
 */

import assert from "node:assert/strict";
import type { AttemptRecord } from "../../manager/results/results_store.ts";
import { join } from "node:path";
import { EntryProcess, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LinePeer } from "../helpers/line_peer.ts";

const dec = new TextDecoder();

async function run(args: string[]): Promise<EntryProcess> {
  const manager = EntryProcess.spawn("manager.ts", args);
  await manager.exit();
  return manager;
}

Deno.test("manager: a restart with an edited list runs exactly the jobs without a settled record", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  const results = join(dir.path, "res");
  const first = Array.from({ length: 50 }, (_, i) => `echo job ${i}`);
  await Deno.writeTextFile(list, first.join("\n"));
  await run(["--jobs", list, "--results", results, "--local", "2"]);
  assert.equal(readRecords(results).length, 50);
  // Reorder, drop 10, append 100 (two of them duplicates of kept jobs).
  const kept = first.slice(10).reverse();
  const added = Array.from({ length: 98 }, (_, i) => `echo new ${i}`);
  await Deno.writeTextFile(list, [...kept, ...added, "echo job 20", "echo job 21"].join("\n"));
  const b = await run(["--jobs", list, "--results", results, "--local", "2"]);
  assert.match(
    b.stderr,
    /Resuming in .*: 40 settled earlier \(not run again\); 100 to run; 10 settled record\(s\) belong to jobs no longer in the list/,
  );
  const records = readRecords(results);
  assert.equal(records.length, 150, "50 + 100, nothing twice");
  const second = records.slice(50);
  assert.equal(second.filter((r) => r.command.startsWith("echo new")).length, 98);
  assert.deepEqual(second.filter((r) => r.command.startsWith("echo job")).map((r) => r.key.split("-")[1]), ["2", "2"]);
  assert.match(b.stdout, /100 job\(s\) run .*of 140 in the list 140 succeeded/);
});

Deno.test("manager --fresh moves earlier results aside and runs everything", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo a\necho b\n");
  const results = join(dir.path, "res");
  await run(["--jobs", list, "--results", results, "--local", "1"]);
  const again = await run(["--jobs", list, "--results", results, "--local", "1", "--fresh"]);
  assert.match(again.stderr, /Earlier results in .*res moved to .*res\.\d{4}-/);
  assert.equal(readRecords(results).length, 2);
  const aside = [...Deno.readDirSync(dir.path)].filter((e) => e.name.startsWith("res."));
  assert.equal(aside.length, 1);
  assert.equal(readRecords(join(dir.path, aside[0].name)).length, 2);
});

Deno.test("manager verify: all match, then a flipped byte and a missing file are caught", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo one\necho two\nprintf 'three'\n");
  const results = join(dir.path, "res");
  await run(["--jobs", list, "--results", results, "--local", "2"]);
  const ok = await run(["verify", results]);
  assert.equal((await ok.exit()).code, 0);
  assert.match(ok.stdout, /3 record\(s\), 3 file\(s\).*all match/);
  const [r1, r2] = readRecords(results);
  const path = join(results, r1.output!);
  const bytes = await Deno.readFile(path);
  bytes[0] ^= 0x01;
  await Deno.writeFile(path, bytes);
  await Deno.remove(join(results, r2.output!));
  const bad = await run(["verify", results]);
  assert.equal((await bad.exit()).code, 1);
  assert.match(bad.stdout, new RegExp(`${r1.output}: SHA-256 [0-9a-f]+, recorded ${r1.sha256}`));
  assert.match(bad.stdout, new RegExp(`${r2.output}: missing`));
  assert.match(bad.stdout, /2 problem\(s\)/);
  const usage = await run(["verify"]);
  assert.equal((await usage.exit()).code, 2);
});

Deno.test("JOURNAL_DAMAGED: a journal damaged before its last line stops manager (exit 3), verify and report, naming the line", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "echo one\necho two\necho three\n");
  const results = join(dir.path, "res");
  await run(["--jobs", list, "--results", results, "--local", "1"]);
  const path = join(results, "journal.jsonl");
  const lines = (await Deno.readTextFile(path)).split("\n");
  assert.ok(lines.length > 3, "a run record and three job records");
  lines[1] = lines[1].slice(0, 10); // a damaged line 2 with lines after it
  await Deno.writeTextFile(path, lines.join("\n"));
  const before = await Deno.readFile(path);

  const again = await run(["--jobs", list, "--results", results, "--local", "1"]);
  assert.equal((await again.exit()).code, 3, again.stderr);
  assert.match(again.stderr, /damaged at line 2\b/);
  assert.deepEqual(await Deno.readFile(path), before, "a damaged journal is left as it is");

  const verify = await run(["verify", results]);
  assert.equal((await verify.exit()).code, 1);
  assert.match(verify.stdout, /journal\.jsonl: record does not parse \(journal line 2\)/);

  const report = await run(["report", results]);
  assert.equal((await report.exit()).code, 1, report.stderr);
  assert.match(report.stderr, /damaged at line 2\b/);
});

Deno.test("manager --retries: a failing job is tried again, each attempt kept, recorded once", async () => {
  await using dir = await tempDir();
  const counter = join(dir.path, "count");
  const list = join(dir.path, "jobs.txt");
  // Fails twice, then succeeds; the other always fails.
  await Deno.writeTextFile(list, `echo x >> ${counter}; n=$(wc -l < ${counter}); echo try $n; [ $n -ge 3 ]\nexit 9\n`);
  const results = join(dir.path, "res");
  const m = await run(["--jobs", list, "--results", results, "--local", "1", "--retries", "2"]);
  assert.equal((await m.exit()).code, 1, "the always-failing job still fails");
  const journal = readJournal(results);
  const recs = byLine(readRecords(results));
  // A fast failure is first kept as a (suspect) attempt record, and may then
  // settle its job: the earlier tries are the attempts before the settling one.
  const attempts = journal.filter((r): r is AttemptRecord =>
    r.type === "attempt" && r.attempt !== recs.get(r.line)!.attempt
  );
  assert.equal(attempts.length, 4, "two failed tries of each job");
  assert.equal(
    new Set(attempts.map((a) => `${a.key}~${a.attempt}`)).size,
    4,
    "each try kept once, under its own number",
  );
  assert.equal(recs.get(1)!.status, 0);
  assert.equal(recs.get(1)!.attempt, 3);
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "try 3\n");
  assert.equal(recs.get(2)!.status, 9);
  assert.equal(recs.get(2)!.attempt, 3);
  const firstTry = attempts.find((a) => a.line === 1 && a.attempt === 1)!;
  assert.equal(Deno.readTextFileSync(join(results, firstTry.output!)), "try 1\n");
});

Deno.test("manager --max-attempts: a job whose runners keep vanishing is recorded as lost, once", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["echo never-delivered"], ["--max-attempts", "2"]);
  await using _m = manager;
  for (let i = 0; i < 2; i++) {
    using p = await LinePeer.connect(port);
    await p.hail(`vanisher-${i}`);
    await p.line("PETO");
    assert.equal(await p.read(), "echo never-delivered");
  }
  assert.equal((await manager.exit()).code, 1);
  const [rec] = readRecords(results);
  assert.equal(rec.status, null);
  assert.match(rec.lost!, /its runner vanisher-1 \(127\.0\.0\.1:\d+\) was lost; lost 2 time\(s\)/);
  assert.match(manager.stderr, /given up as lost/);
});

Deno.test("manager: SIGTERM stops handing out jobs and waits for running ones; the rest run on restart", async () => {
  await using dir = await tempDir();
  const { manager, port, results, list } = await startManagerOn(dir.path, [
    "sleep 1; echo slow",
    "echo a",
    "echo b",
    "echo c",
  ]);
  await using _m = manager;
  using p = await LinePeer.connect(port);
  await p.hail("manual");
  await p.line("PETO");
  const job = await p.read();
  manager.kill("SIGTERM");
  await manager.waitFor(/Stopping: no new jobs; waiting up to 30s for 1 job/);
  await p.line("PETO");
  assert.equal(await p.read(), "FINO", "no new job after SIGTERM");
  await p.line(`REZULTO ${job} 0 5`);
  assert.equal(await p.read(), "PRETA");
  await p.send("slow\n");
  assert.equal(await p.read(), "RICEVIS", "a running job is still received");
  await p.line("FINO ANKAU");
  assert.equal((await manager.exit()).code, 143);
  assert.match(manager.stdout, /stopped with 3 job\(s\) unsettled/);
  assert.deepEqual(readRecords(results).map((r) => r.command), ["sleep 1; echo slow"]);
  const again = await run(["--jobs", list, "--results", results, "--local", "2"]);
  assert.equal((await again.exit()).code, 0);
  assert.equal(readRecords(results).length, 4);
});

Deno.test("manager: a second SIGTERM stops at once; the journal stays consistent", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["sleep 282.5", "echo a"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--name", "r"]);
  await manager.waitFor(/Runner r joined/);
  await new Promise((r) => setTimeout(r, 300));
  manager.kill("SIGTERM");
  await manager.waitFor(/Stopping: no new jobs/);
  manager.kill("SIGTERM");
  assert.equal((await manager.exit(10_000)).code, 143);
  runner.kill("SIGKILL");
  await runner.exit();
  const verify = await run(["verify", results]);
  assert.equal((await verify.exit()).code, 0);
});

Deno.test("manager SIGKILLed while a big output is written directly (past 8 MiB): the restart sweeps the staged file, runs the job again, records it once byte for byte", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  const results = join(dir.path, "res");
  const size = 300 * 1024 * 1024 + 77;
  const command = `yes 'a big output, written around the page cache' | head -c ${size}`;
  await Deno.writeTextFile(list, `${command}\necho small\n`);
  const first = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--local", "1"]);
  // Killed once its staged file is well into the direct part.
  const staged = (): number => {
    try {
      for (const e of Deno.readDirSync(join(results, "tmp"))) {
        if (e.name.endsWith(".part")) return Deno.statSync(join(results, "tmp", e.name)).size;
      }
    } catch {
      // Not made yet.
    }
    return 0;
  };
  const deadline = Date.now() + 60_000;
  while (staged() < 24 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(staged() >= 24 * 1024 * 1024, "the staged output got past the mark");
  first.kill("SIGKILL");
  await first.exit();
  assert.equal(readRecords(results).filter((r) => r.line === 1).length, 0, "nothing recorded for the big job");
  const second = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--local", "1"]);
  assert.equal((await second.exit()).code, 0, second.stderr);
  const records = readRecords(results).filter((r) => r.line === 1);
  assert.equal(records.length, 1, "recorded once");
  assert.equal(records[0].size, size);
  const expected = await new Deno.Command("/bin/sh", { args: ["-c", `${command} | sha256sum`] }).output();
  assert.equal(records[0].sha256, dec.decode(expected.stdout).split(" ")[0]);
  const stored = await new Deno.Command("sha256sum", { args: [join(results, records[0].output!)] }).output();
  assert.equal(dec.decode(stored.stdout).split(" ")[0], records[0].sha256, "the file on disk is what the record says");
  assert.deepEqual([...Deno.readDirSync(join(results, "tmp"))], [], "no staged file left");
});
