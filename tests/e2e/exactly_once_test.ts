/**
 * Exactly once, end to end (issue 13, items 1-6): real manager and runner
 * processes, and scripted text runners (line peers) speaking the vico
 * extension with tags by hand where a real runner cannot produce the
 * interleaving. Each test says in its comment what it shows.
 *
 * Checked throughout: one `job` record per key, `manager verify` clean, and
 * (where a run ends) a restart on the same results directory exits as the
 * first run did.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { jobKey } from "../../manager/jobs/job_key.ts";
import type { AttemptRecord, JournalRecord } from "../../manager/results/results_store.ts";
import { formatTag, JOB_TAG_PREFIX, parseTag, PULSE_LINE, type Tag } from "../../protocol/vico_extension.ts";
import {
  EntryProcess,
  freePort,
  startManagerAgain,
  startManagerOn,
  startRunner,
  writeJobList,
} from "../helpers/entry_process.ts";
import { readJournal, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LinePeer } from "../helpers/line_peer.ts";

const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scripted identified runner that asked for tagged hand-outs and results. */
class TaggedPeer implements Disposable {
  readonly peer: LinePeer;
  /** The manager's `VICO/1 ok …` line. */
  readonly ok: string;

  private constructor(peer: LinePeer, ok: string) {
    this.peer = peer;
    this.ok = ok;
  }

  /** Connects as runner `id` (want=tag), holding `holds` (tagged held lines), and hails. */
  static async join(port: number, id: string, holds: string[] = []): Promise<TaggedPeer> {
    const peer = await LinePeer.connect(port);
    const count = holds.length > 0 ? ` holds=${holds.length}` : "";
    await peer.line(`VICO/1 hello proto=text id=${id} want=tag${count}`);
    for (const h of holds) await peer.line(h);
    const ok = await peer.read();
    assert.match(ok ?? "", /^VICO\/1 ok .*tag=1/, "the manager agreed to tags");
    assert.match((await peer.hail(id)) ?? "", /^VERSIO /);
    return new TaggedPeer(peer, ok!);
  }

  /** The next line that is not a pulse. */
  async read(timeoutMs = 15_000): Promise<string | null> {
    while (true) {
      const line = await this.peer.read(timeoutMs);
      if (line !== PULSE_LINE) return line;
    }
  }

  /** PETO, and the tagged hand-out that answers it. */
  async take(): Promise<{ tag: Tag; command: string }> {
    await this.peer.line("PETO");
    const tagLine = await this.read();
    assert.ok(tagLine?.startsWith(JOB_TAG_PREFIX), `a tagged hand-out, not ${tagLine}`);
    const tag = parseTag(tagLine!.slice(JOB_TAG_PREFIX.length));
    const command = await this.read();
    assert.ok(command !== null);
    return { tag: { run: tag.run, key: tag.key, attempt: tag.attempt }, command };
  }

  /** Announces a tagged result; returns the manager's answer (PRETA, or ERARO …). */
  async announce(tag: Tag, command: string, status: number, size: number): Promise<string | null> {
    await this.peer.line(`VICO/1 result ${formatTag(tag)}`);
    await this.peer.line(`REZULTO ${command} ${status} ${size}`);
    return await this.read();
  }

  /** Delivers a tagged result whole; returns the manager's answers (PRETA, then RICEVIS; or ERARO …). */
  async deliver(tag: Tag, command: string, status: number, output: string): Promise<(string | null)[]> {
    const bytes = new TextEncoder().encode(output);
    const first = await this.announce(tag, command, status, bytes.length);
    if (first !== "PRETA") return [first];
    await this.peer.send(bytes);
    return [first, await this.read()];
  }

  [Symbol.dispose](): void {
    this.peer[Symbol.dispose]();
  }
}

/** `manager verify` on `results`: its exit code and output. */
async function verify(results: string): Promise<{ code: number; text: string }> {
  const v = EntryProcess.spawn("manager.ts", ["verify", results]);
  const { code } = await v.exit();
  return { code, text: v.stdout + v.stderr };
}

/** Asserts one `job` record per key in `results`, and `manager verify` clean. */
async function assertOnceAndVerified(results: string, keys: number): Promise<void> {
  const counts = new Map<string, number>();
  for (const r of readRecords(results)) counts.set(r.key, (counts.get(r.key) ?? 0) + 1);
  assert.equal(counts.size, keys, `every key recorded: ${JSON.stringify([...counts])}`);
  for (const [key, n] of counts) assert.equal(n, 1, `key ${key} has ${n} job records`);
  const v = await verify(results);
  assert.equal(v.code, 0, `manager verify: ${v.text}`);
}

/** Runs the manager again on a settled results directory: its exit code. */
async function restartCode(list: string, results: string): Promise<number> {
  const again = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--port", "0"]);
  await using _a = again;
  const { code } = await again.exit(60_000);
  assert.match(again.stderr, /settled earlier \(not run again\); 0 to run/, again.stderr);
  return code;
}

/** Polls `results`' journal until `found` holds (a record was made), at most `ms`. */
async function journalUntil(
  results: string,
  found: (journal: JournalRecord[]) => boolean,
  ms = 20_000,
): Promise<JournalRecord[]> {
  const deadline = performance.now() + ms;
  while (true) {
    let journal: JournalRecord[] = [];
    try {
      journal = readJournal(results);
    } catch {
      // Not there yet.
    }
    if (found(journal)) return journal;
    if (performance.now() > deadline) throw new Error(`journal never matched: ${JSON.stringify(journal)}`);
    await sleep(50);
  }
}

/** A lease of 1 s, pulses too slow to matter, and a job's first loss is its last. */
const ONE_LOSS = ["--max-attempts", "1", "--pulse", "30s", "--lease", "1s"];

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

// Item 3. What a forger (an identified runner) says about jobs it was never
// issued is refused: ERARO and the connection is dropped; nothing of it is
// recorded; the job it did hold goes back without a loss charged to it (with
// --max-attempts 1 a charged loss would record it as lost); a real runner
// then runs every job, and each is recorded once from its real output.
Deno.test("Ledger.claim over the wire: a tagged result for a job or attempt the runner was not issued is refused with ERARO, recorded from nowhere, and costs no loss", async () => {
  await using dir = await tempDir();
  const jobs = ["echo y", "echo x", "echo z"];
  const { manager, port, results, list } = await startManagerOn(dir.path, jobs, ONE_LOSS);
  await using _m = manager;
  // An honest identified runner holds "echo y" (attempt 1), as runner "g".
  using honest = await TaggedPeer.join(port, "g");
  type Hand = { tag: Tag; command: string };
  const forged = async (make: (mine: Hand, y: Hand) => Hand) => {
    using f = await TaggedPeer.join(port, "f");
    const mine = await f.take();
    const target = make(mine, y!);
    const answer = await f.announce(target.tag, target.command, 0, 6);
    assert.match(answer ?? "", /^ERARO /, `refused: ${answer}`);
    assert.deepEqual(await f.peer.rest(), [], "then the connection is closed");
    return mine;
  };
  const first = await honest.take();
  const y = first.command === "echo y" ? first : undefined;
  assert.ok(y !== undefined, `the honest runner got echo y first? ${first.command}`);
  // A job it never held (held by runner g), as g's very attempt.
  const m1 = await forged((_mine, y) => y);
  // An attempt it was not issued: its own job, attempt 2.
  const m2 = await forged((mine) => ({ ...mine, tag: { ...mine.tag, attempt: mine.tag.attempt + 1 } }));
  // A job never handed out to anyone (pending), under this run's id.
  const m3 = await forged((mine) => {
    const other = jobs.find((c) => c !== mine.command && c !== "echo y")!;
    return { command: other, tag: { run: mine.tag.run, key: jobKey(other, 1), attempt: 1 } };
  });
  // Its own job and attempt, but tagged with a run this directory never had.
  const m4 = await forged((mine) => ({ ...mine, tag: { ...mine.tag, run: "0123456789abcdef" } }));
  assert.match(manager.stderr, /Dropping runner f .*REZULTO for a job this runner (does not hold|was not given)/);
  // The honest runner delivers its own; a real runner does the rest.
  assert.deepEqual(await honest.deliver(y.tag, y.command, 0, "y\n"), ["PRETA", "RICEVIS"]);
  await using runner = startRunner(port, ["--name", "real"]);
  const [ms] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  await assertOnceAndVerified(results, 3);
  for (const r of readRecords(results)) {
    assert.equal(r.status, 0);
    assert.equal(r.lost, undefined, `not charged a loss: ${JSON.stringify(r)}`);
    assert.equal(dec.decode(readOutput(results, r)), r.command.slice(5) + "\n", "the real output, not the forger's");
    assert.equal(r.host, r.command === "echo y" ? "g" : "real");
  }
  assert.doesNotMatch(manager.stderr, /given up as lost/);
  for (const m of [m1, m2, m3, m4]) assert.notEqual(m.command, "echo y");
  assert.equal(await restartCode(list, results), 0);
});

// Item 2, the result first. Runner "a" holds the job on one connection and,
// on a second one (as after a partition the manager has not noticed yet),
// begins delivering its result; then the first connection drops, its lease
// runs out, and with --max-attempts 1 the job is given up as lost while the
// result's bytes are still in flight. The result stands: one record, its
// own, no lost record; the run exits 0, and so does a restart.
Deno.test("Ledger.claimLost over the wire: a job given up as lost on its last loss while its result's bytes arrive is recorded once, from the result", async () => {
  await using dir = await tempDir();
  const { manager, port, results, list } = await startManagerOn(dir.path, ["echo x"], ONE_LOSS);
  await using _m = manager;
  const c1 = await TaggedPeer.join(port, "a");
  const hand = await c1.take();
  using c2 = await TaggedPeer.join(port, "a");
  assert.equal(await c2.announce(hand.tag, hand.command, 0, 4), "PRETA");
  await c2.peer.send("x-");
  c1[Symbol.dispose]();
  await manager.waitFor(/Job at line 1 is given up as lost: runner a did not come back in time; lost 1 time/);
  await sleep(200); // the lost claim has met the commit in flight
  await c2.peer.send("a\n");
  assert.equal(await c2.read(), "RICEVIS");
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  await assertOnceAndVerified(results, 1);
  const [rec] = readRecords(results);
  assert.equal(rec.status, 0);
  assert.equal(rec.lost, undefined);
  assert.equal(dec.decode(readOutput(results, rec)), "x-a\n");
  assert.equal(await restartCode(list, results), 0);
});

// Item 2, the loss first. Runner "a" is lost holding the job; its lease
// runs out and with --max-attempts 1 the job is given up as lost (recorded).
// Then "a" comes back naming the very hand-out it holds: the manager does not
// take it back (drop=0), and a REZULTO it sends for it anyway is refused. One
// record, the lost one; the run exits 1, and so does a restart.
Deno.test("Ledger.claimLost over the wire: a result that comes back after its job was given up as lost is not taken; one record", async () => {
  await using dir = await tempDir();
  const { manager, port, results, list } = await startManagerOn(dir.path, ["echo x", "echo keep"], ONE_LOSS);
  await using _m = manager;
  const c1 = await TaggedPeer.join(port, "a");
  const hand = await c1.take();
  assert.equal(hand.command, "echo x");
  using keeper = await TaggedPeer.join(port, "k"); // keeps the run open
  const keep = await keeper.take();
  c1[Symbol.dispose]();
  await manager.waitFor(/Job at line 1 is given up as lost: runner a did not come back in time; lost 1 time/);
  await journalUntil(results, (j) => j.some((r) => r.type === "job"));
  await sleep(300); // the lost record is durable and the ledger settled (the line is in the file before its fsync)
  using c2 = await TaggedPeer.join(port, "a", [`${formatTag(hand.tag)} ${hand.command}`]);
  assert.match(c2.ok, / drop=0( |$)/, `the manager does not want it back: ${c2.ok}`);
  const answer = await c2.deliver(hand.tag, hand.command, 0, "x\n");
  assert.match(answer[0] ?? "", /^ERARO /);
  assert.deepEqual(await keeper.deliver(keep.tag, keep.command, 0, "keep\n"), ["PRETA", "RICEVIS"]);
  assert.equal((await manager.exit()).code, 1, manager.stderr);
  await assertOnceAndVerified(results, 2);
  const rec = readRecords(results).find((r) => r.command === "echo x")!;
  assert.equal(rec.status, null);
  assert.match(rec.lost ?? "", /runner a did not come back in time; lost 1 time/);
  assert.equal(await restartCode(list, results), 1);
});

// Item 1, a suspect plus a second result. Runner "a" fails the job fast: the
// quarantine holds the result back as a suspect (an attempt record marked
// suspect, durable before RICEVIS). Then a second result for the same job
// arrives from another identified runner ("b", status 0), and "a" comes back
// on a new connection and delivers its result again (as a --persist runner
// that missed the RICEVIS would). Neither is recorded; once "a" succeeds at
// another job, the suspect is recorded as the failure it is: one `job`
// record per key, naming the suspect's output; verify is clean; the run
// exits 1 and a restart exits 1 too.
Deno.test("ResultRecorder suspect over the wire: a held fast failure plus second results for its job from identified runners is recorded once", async () => {
  await using dir = await tempDir();
  const { manager, port, results, list } = await startManagerOn(dir.path, ["echo x; exit 3", "echo keep"], [
    "--pulse",
    "30s",
  ]);
  await using _m = manager;
  using a = await TaggedPeer.join(port, "a");
  const x = await a.take();
  assert.equal(x.command, "echo x; exit 3");
  assert.deepEqual(await a.deliver(x.tag, x.command, 3, "x\n"), ["PRETA", "RICEVIS"]);
  const [suspect] = readJournal(results).filter((r): r is AttemptRecord => r.type === "attempt");
  assert.equal(suspect?.suspect, true, "held as a suspect, durable before RICEVIS");
  assert.equal(readRecords(results).length, 0, "and not recorded yet");
  // A second result for the job, from an identified runner it was never given to.
  {
    using b = await TaggedPeer.join(port, "b");
    const answer = await b.deliver(x.tag, x.command, 0, "forged\n");
    assert.ok(
      answer[0]?.startsWith("ERARO ") || (answer[0] === "PRETA" && answer[1] === "RICEVIS"),
      `refused, or discarded as a duplicate: ${answer}`,
    );
  }
  // The same result again from "a", on a new connection that names it.
  {
    using again = await TaggedPeer.join(port, "a", [`${formatTag(x.tag)} ${x.command}`]);
    assert.match(again.ok, / drop=0( |$)/, `not taken back: ${again.ok}`);
    assert.deepEqual(await again.deliver(x.tag, x.command, 0, "late\n"), ["PRETA", "RICEVIS"]);
  }
  assert.equal(readRecords(results).length, 0, "nothing recorded from the second results");
  const keep = await a.take();
  assert.deepEqual(await a.deliver(keep.tag, keep.command, 0, "keep\n"), ["PRETA", "RICEVIS"]);
  assert.equal((await manager.exit()).code, 1, manager.stderr);
  await assertOnceAndVerified(results, 2);
  const rec = readRecords(results).find((r) => r.command === x.command)!;
  assert.equal(rec.status, 3);
  assert.equal(rec.attempt, 1);
  assert.equal(rec.output, suspect.output, "the job record names the suspect's output");
  assert.equal(dec.decode(readOutput(results, rec)), "x\n");
  assert.equal(await restartCode(list, results), 1);
});

// Item 4. A fast non-zero result held as a suspect is acknowledged only once
// its attempt record is durable: right after RICEVIS the journal holds it
// (output file and hash included), so a SIGKILL of the manager right then
// loses nothing. A restart on the same directory has no verdict for it: the
// suspect is the failure it is (no --retries left), and the restart records
// it from that attempt record, at start: the job does not run a second time.
Deno.test("ResultRecorder suspect: RICEVIS only after its attempt record is durable; a manager SIGKILL right after loses nothing", async () => {
  await using dir = await tempDir();
  const marks = join(dir.path, "marks");
  const jobs = [`echo ran >> ${marks}; echo real; exit 3`, "sleep 0.2; echo keep"];
  const port = freePort();
  const { manager, results, list } = await startManagerOn(dir.path, jobs, ["--pulse", "30s", "--port", String(port)]);
  await using _m = manager;
  const x = await (async () => {
    using a = await TaggedPeer.join(port, "a");
    const x = await a.take();
    assert.equal(x.command, jobs[0]);
    assert.deepEqual(await a.deliver(x.tag, x.command, 3, "fake\n"), ["PRETA", "RICEVIS"]);
    return x;
  })();
  // The moment RICEVIS is read: what the journal holds.
  const held = readJournal(results).filter((r): r is AttemptRecord => r.type === "attempt");
  assert.equal(held.length, 1, "its attempt record is in the journal");
  assert.deepEqual(
    { key: held[0].key, attempt: held[0].attempt, status: held[0].status, suspect: held[0].suspect },
    { key: x.tag.key, attempt: 1, status: 3, suspect: true },
  );
  const bytes = Deno.readFileSync(join(results, held[0].output!));
  assert.equal(dec.decode(bytes), "fake\n");
  assert.equal(held[0].sha256, sha256(bytes));
  manager.kill("SIGKILL");
  await manager.exit();
  const again = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--port", "0", "--local", "1"]);
  await using _again = again;
  assert.equal((await again.exit(60_000)).code, 1, again.stderr);
  assert.match(again.stderr, /1 settled earlier \(not run again\); 1 to run/);
  assert.throws(() => Deno.statSync(marks), Deno.errors.NotFound, "the restart did not run it again");
  await assertOnceAndVerified(results, 2);
  const journal = readJournal(results);
  const attempts = journal.filter((r): r is AttemptRecord => r.type === "attempt" && r.key === x.tag.key);
  assert.deepEqual(attempts, [held[0]], "attempt 1's record, and no other attempt");
  const rec = readRecords(results).find((r) => r.key === x.tag.key)!;
  assert.deepEqual([rec.attempt, rec.status, dec.decode(readOutput(results, rec))], [1, 3, "fake\n"]);
  assert.equal(rec.output, held[0].output, "recorded from the suspect's own attempt record");
  assert.equal(await restartCode(list, results), 1);
});

// Item 6. `--retries` across a restart: the first run keeps attempt 1's
// failure and is SIGKILLed while attempt 2 runs; the restart goes on from
// the journal: its tries are attempts 2 and 3 (the retries left), each into
// its own file; attempt 1's file is never overwritten (its hash, taken
// before the restart, still matches, and `manager verify` is clean); the job
// is recorded once, as attempt 3.
Deno.test("manager --retries: attempt numbers continue across a restart; no earlier attempt's file is overwritten", async () => {
  await using dir = await tempDir();
  const counter = join(dir.path, "count");
  // Each try says which it is; slow enough not to be a fast failure, and the
  // second one slow enough to be killed in the middle.
  const job =
    `echo x >> ${counter}; n=$(wc -l < ${counter}); echo try $n; sleep $([ $n -eq 2 ] && echo 30 || echo 0.6); exit 7`;
  const { manager, results, list } = await startManagerOn(dir.path, [job], ["--local", "1", "--retries", "2"]);
  await using _m = manager;
  const journal = await journalUntil(results, (j) => j.some((r) => r.type === "attempt"));
  const first = journal.find((r): r is AttemptRecord => r.type === "attempt")!;
  assert.equal(first.attempt, 1);
  for (let i = 0; i < 200 && !Deno.readTextFileSync(counter).includes("x\nx\n"); i++) await sleep(50);
  manager.kill("SIGKILL");
  await manager.exit();
  const before = sha256(Deno.readFileSync(join(results, first.output!)));
  assert.equal(dec.decode(Deno.readFileSync(join(results, first.output!))), "try 1\n");
  const again = EntryProcess.spawn("manager.ts", [
    "--jobs",
    list,
    "--results",
    results,
    "--local",
    "1",
    "--retries",
    "2",
  ]);
  await using _again = again;
  assert.equal((await again.exit(90_000)).code, 1, again.stderr);
  await assertOnceAndVerified(results, 1);
  const attempts = readJournal(results).filter((r): r is AttemptRecord => r.type === "attempt");
  const [rec] = readRecords(results);
  // Attempt 2 of the first run left no record (a local worker, killed with its manager): the restart
  // issues 2 again; the killed try is the counter's second line, so the restart's tries say 3 and 4.
  assert.deepEqual(attempts.map((a) => a.attempt), [1, 2], "attempt 1 kept once, and the restart's attempt 2");
  assert.deepEqual(attempts.map((a) => dec.decode(Deno.readFileSync(join(results, a.output!)))), [
    "try 1\n",
    "try 3\n",
  ]);
  assert.equal(new Set(attempts.map((a) => a.output)).size, 2, "each in its own file");
  assert.equal(sha256(Deno.readFileSync(join(results, first.output!))), before, "attempt 1's file is untouched");
  assert.deepEqual(attempts[0], first, "and so is its record");
  assert.deepEqual([rec.attempt, dec.decode(readOutput(results, rec))], [3, "try 4\n"], "the retries left, no more");
  assert.equal(rec.status, 7);
  assert.equal(await restartCode(list, results), 1);
});

// Item 6, with an identified runner. Attempt 1 fails (kept); attempt 2 is
// handed to runner "a" (its `assign` record durable first) and the manager is
// SIGKILLed. The restart continues after the last number the journal gave:
// its hand-outs are attempts 3 and 4 (the retries left), never 1 or 2 again;
// each kept attempt has its own file, attempt 1's untouched; one record.
Deno.test("manager --retries: after a restart, hand-outs continue after the journal's last assigned attempt", async () => {
  await using dir = await tempDir();
  const job = "echo local try; sleep 0.1; exit 7";
  const { manager, port, results, list } = await startManagerOn(dir.path, [job], [
    "--retries",
    "2",
    "--blackhole-streak",
    "0",
    "--pulse",
    "30s",
  ]);
  await using _m = manager;
  using a = await TaggedPeer.join(port, "a");
  const one = await a.take();
  assert.equal(one.tag.attempt, 1);
  assert.deepEqual(await a.deliver(one.tag, one.command, 7, "peer try 1\n"), ["PRETA", "RICEVIS"]);
  const two = await a.take();
  assert.equal(two.tag.attempt, 2);
  const [first] = readJournal(results).filter((r): r is AttemptRecord => r.type === "attempt");
  const before = sha256(Deno.readFileSync(join(results, first.output!)));
  manager.kill("SIGKILL");
  await manager.exit();
  a[Symbol.dispose]();
  const args = ["--jobs", list, "--results", results, "--local", "1", "--retries", "2", "--lease", "1s"];
  const again = EntryProcess.spawn("manager.ts", args);
  await using _again = again;
  assert.equal((await again.exit(90_000)).code, 1, again.stderr);
  await assertOnceAndVerified(results, 1);
  const [rec] = readRecords(results);
  // The settling attempt may first be kept as a suspect (a fast failure): the tries before it are the retries.
  const attempts = readJournal(results).filter((r): r is AttemptRecord =>
    r.type === "attempt" && r.attempt !== rec.attempt
  );
  assert.deepEqual(attempts.map((r) => r.attempt), [1, 3], "attempt 2 was issued and never delivered");
  assert.deepEqual(attempts[0], first);
  assert.equal(sha256(Deno.readFileSync(join(results, first.output!))), before, "attempt 1's file is untouched");
  assert.equal(dec.decode(Deno.readFileSync(join(results, attempts[1].output!))), "local try\n");
  assert.equal(rec.attempt, 4);
  assert.equal(rec.status, 7);
  assert.equal(await restartCode(list, results), 1);
});

// Item 5. A --persist runner keeps the result of a job whose manager died;
// the next manager on that port is a --fresh run on the same results
// directory, or an unrelated manager on another directory whose list has the
// same command line. Neither records the kept result (produced before it
// started): the runner is told it is not wanted (drop=), sets it aside in
// STATE_DIR/set-aside/ with a WARN, runs the job afresh for the new run, and
// goes on with the rest of that run's list.
for (const how of ["--fresh on the same directory", "another results directory"]) {
  Deno.test(`runner --persist: a kept result is not recorded by a later run that did not issue it (${how}); it is set aside`, async () => {
    await using dir = await tempDir();
    await using state = await tempDir();
    const marks = join(dir.path, "marks");
    const x = `echo ran >> ${marks}; sleep 1.5; echo out-$(wc -l < ${marks})`;
    const port = freePort();
    const first = await startManagerOn(dir.path, [x], ["--port", String(port), "--pulse", "1s", "--lease", "20s"]);
    await using _first = first.manager;
    const args = ["--persist", "--state-dir", state.path, "--name", "svc", "--retry-max", "1s", "--workers", "1"];
    await using svc = startRunner(port, args);
    await first.manager.waitFor(/Runner svc joined/);
    await sleep(500); // the job runs
    first.manager.kill("SIGKILL");
    await first.manager.exit();
    await svc.waitFor(/Kept the result of .*sleep 1\.5/, 15_000);
    const jobs = [x, "echo other"];
    let results: string, list: string;
    if (how.startsWith("--fresh")) {
      list = await writeJobList(dir.path, jobs);
      results = first.results;
    } else {
      list = await writeJobList(dir.path, jobs, "other.txt");
      results = join(dir.path, "other.results");
    }
    const started = Date.now();
    const { manager: second } = await startManagerAgain({ list, results }, [
      ...["--port", String(port), "--pulse", "1s"],
      ...(how.startsWith("--fresh") ? ["--fresh"] : []),
    ]);
    await using _second = second;
    assert.equal((await second.exit(60_000)).code, 0, second.stderr);
    await assertOnceAndVerified(results, 2);
    const rec = readRecords(results).find((r) => r.command === x)!;
    assert.equal(dec.decode(readOutput(results, rec)), "out-2\n", "run afresh, not the kept output");
    assert.ok(Date.parse(rec.start) >= started - 1000, "handed out by this run");
    assert.ok(Date.parse(rec.end) - Date.parse(rec.start) >= 1000, `it ran here: ${rec.start} .. ${rec.end}`);
    assert.ok(readRecords(results).every((r) => r.host === "svc"), "the runner went on working");
    assert.equal(Deno.readTextFileSync(marks), "ran\nran\n");
    assert.match(svc.stderr, /WARN .*Set aside the kept result of .*sleep 1\.5.*: the manager did not take it back/);
    const aside = [...Deno.readDirSync(join(state.path, "set-aside"))].map((e) => e.name);
    const out = aside.find((n) => n.endsWith(".out"));
    assert.ok(out !== undefined, `set aside: ${aside}`);
    assert.equal(Deno.readTextFileSync(join(state.path, "set-aside", out)), "out-1\n", "the kept output, kept");
    svc.kill("SIGTERM");
    assert.equal((await svc.exit()).code, 0, svc.stderr);
  });
}

// Item 1, with real processes. A --persist runner is SIGSTOPped holding the
// job, past its pulses and its lease: the job goes to another runner, where
// it now fails fast (its first run left a flag), so the quarantine holds that
// result back as a suspect. Then the stopped runner is continued and delivers
// the result it finished meanwhile (status 0, the earlier attempt). Exactly
// one `job` record for the key (whichever attempt the ledger let settle it),
// `manager verify` clean, and a restart exits as the first run did.
Deno.test("runner --persist SIGSTOPped past its lease, then continued, while its job's rerun is a held suspect: one record", async () => {
  await using dir = await tempDir();
  await using state = await tempDir();
  const flag = join(dir.path, "flag");
  const marks = join(dir.path, "marks");
  const x = `echo ran >> ${marks}; if [ -e ${flag} ]; then echo again; exit 5; fi; touch ${flag}; sleep 1.5; echo slow`;
  const port = freePort();
  const { manager, results, list } = await startManagerOn(dir.path, [x, "sleep 8; echo keeper"], [
    "--port",
    String(port),
    "--pulse",
    "1s",
    "--lease",
    "1s",
  ]);
  await using _m = manager;
  await using svc = startRunner(port, ["--persist", "--state-dir", state.path, "--name", "svc", "--workers", "1"]);
  await manager.waitFor(/Runner svc joined/);
  for (let i = 0; i < 100 && !(await Deno.stat(flag).then(() => true, () => false)); i++) await sleep(50);
  svc.kill("SIGSTOP");
  try {
    await manager.waitFor(/1 job\(s\) of runner \S+ go back to the queue/, 15_000);
    await using other = startRunner(port, ["--name", "other", "--workers", "2"]);
    // The rerun fails fast: held back as a suspect (an attempt record marked so).
    await journalUntil(
      results,
      (j) => j.some((r) => r.type === "attempt" && r.suspect === true && r.key === jobKey(x, 1)),
    );
    svc.kill("SIGCONT");
    const [ms, os] = await Promise.all([manager.exit(60_000), other.exit()]);
    const records = readRecords(results);
    await assertOnceAndVerified(results, 2);
    const rec = records.find((r) => r.command === x)!;
    assert.ok(
      (rec.status === 0 && dec.decode(readOutput(results, rec)) === "slow\n" && rec.host === "svc") ||
        (rec.status === 5 && dec.decode(readOutput(results, rec)) === "again\n" && rec.host === "other"),
      `one whole result: ${JSON.stringify(rec)}`,
    );
    assert.equal(ms.code, rec.status === 0 ? 0 : 1, manager.stderr);
    assert.equal(os.code, 0, other.stderr);
    assert.equal(Deno.readTextFileSync(marks), "ran\nran\n", "twice: once on each runner");
    assert.equal(await restartCode(list, results), ms.code);
  } finally {
    svc.kill("SIGCONT");
  }
  svc.kill("SIGTERM");
  assert.equal((await svc.exit()).code, 0, svc.stderr);
});
