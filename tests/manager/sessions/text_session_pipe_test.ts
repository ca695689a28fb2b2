/**
 * The manager's text session in the pipelined exchange (`pipe=1`), behind
 * the real Server over an in-memory listener, with the real scheduler,
 * ledger, recorder and a durable results store.
 */

import assert from "node:assert/strict";
import { ACK_HOLD_MS } from "../../../manager/sessions/text_session.ts";
import { pipeManager } from "../../helpers/pipe_manager.ts";
import { readJournal, tempDir } from "../../helpers/journal.ts";

const enc = new TextEncoder();

Deno.test("ManagerTextSession pipe=1: PETOs and results sent without waiting are answered in order, acks once durable", async () => {
  await using dir = await tempDir();
  const m = await pipeManager(dir.path, "echo a\necho b\necho c\n");
  const { reader, say, ok } = await m.connect();
  assert.equal(ok, "VICO/1 ok tag=1 pipe=1");
  // Two PETOs at once (two idle workers), one write.
  await say("PETO\nPETO\n");
  const tagOf = (line: string) => line.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  const t1 = (await reader.readLine())!;
  assert.match(t1, /^VICO\/1 job run=run1 key=\S+ attempt=1 seq=1$/);
  assert.equal(await reader.readLine(), "echo a");
  const t2 = (await reader.readLine())!;
  assert.match(t2, /seq=2$/);
  assert.equal(await reader.readLine(), "echo b");
  // A result, its raw bytes at once (no PRETA), and the next PETO, all in one write, split oddly.
  const burst = enc.encode(`VICO/1 result ${tagOf(t1)}\nREZULTO echo a 0 2\na\nPETO\n`);
  for (let i = 0; i < burst.length; i += 3) await say(new TextDecoder().decode(burst.subarray(i, i + 3)));
  const lines: string[] = [];
  lines.push((await reader.readLine())!, (await reader.readLine())!, (await reader.readLine())!);
  // The ack and the third job interleave in either order; the job's two lines stay together.
  const ack = `VICO/1 ack ${tagOf(t1)}`;
  assert.ok(lines.includes(ack), lines.join(" | "));
  const jobAt = lines.findIndex((l) => l.startsWith("VICO/1 job "));
  assert.equal(lines[jobAt + 1], "echo c");
  const t3 = lines[jobAt];
  await say(
    `VICO/1 result ${tagOf(t2)}\nREZULTO echo b 1 0\nVICO/1 result ${tagOf(t3)} timedout=1\nREZULTO echo c 0 1\nc`,
  );
  assert.equal(await reader.readLine(), `VICO/1 ack ${tagOf(t2)}`);
  assert.equal(await reader.readLine(), `VICO/1 ack ${tagOf(t3)}`);
  await say("PETO\nPETO\n");
  assert.equal(await reader.readLine(), "FINO");
  assert.equal(await reader.readLine(), "FINO", "every PETO is answered, FINO after FINO");
  await say("FINO ANKAU\n");
  assert.equal(await reader.readLine(), null);
  await m.scheduler.done;
  await m.close();
  const records = readJournal(dir.path).filter((r) => r.type === "job");
  assert.deepEqual(records.map((r) => r.type === "job" ? [r.command, r.status] : []).sort(), [
    ["echo a", 0],
    ["echo b", 1],
    ["echo c", 0],
  ]);
});

Deno.test("ManagerTextSession: a pipelined runner's result may wait the commit window for company; a lock-step one's never", async () => {
  await using dir = await tempDir();
  const m = await pipeManager(dir.path, "echo a\necho b\n", { commitWindowMs: 400 });
  const piped = await m.connect();
  const lockstep = await m.connect("tag");
  assert.equal(lockstep.ok, "VICO/1 ok tag=1");
  const tagOf = (line: string) => line.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  await piped.say("PETO\n");
  const t1 = tagOf((await piped.reader.readLine())!);
  await piped.reader.readLine();
  await lockstep.say("PETO\n");
  const t2 = tagOf((await lockstep.reader.readLine())!);
  await lockstep.reader.readLine();
  // The pipelined runner reads its acks as they come: while another job is
  // out (the lock-step runner's), its lone record waits the window.
  let t0 = performance.now();
  await piped.say(`VICO/1 result ${t1}\nREZULTO echo a 0 0\n`);
  assert.equal(await piped.reader.readLine(), `VICO/1 ack ${t1}`);
  const patient = performance.now() - t0;
  assert.ok(patient >= 350, `pipelined ack after ${patient} ms`);
  // The lock-step runner waits for each step: its record goes to disk at once.
  t0 = performance.now();
  await lockstep.say(`VICO/1 result ${t2}\nREZULTO echo b 0 0\n`);
  assert.equal(await lockstep.reader.readLine(), "PRETA");
  assert.equal(await lockstep.reader.readLine(), "RICEVIS");
  const urgent = performance.now() - t0;
  assert.ok(urgent < 300, `lock-step RICEVIS after ${urgent} ms`);
  for (const r of [piped, lockstep]) {
    await r.say("PETO\n");
    assert.equal(await r.reader.readLine(), "FINO");
    await r.say("FINO ANKAU\n");
  }
  await m.scheduler.done;
  await m.close();
});

Deno.test("ManagerTextSession pipe=1: the last result out (no other job running) does not wait the commit window", async () => {
  await using dir = await tempDir();
  const m = await pipeManager(dir.path, "echo a\necho b\n", { commitWindowMs: 400 });
  const { reader, say } = await m.connect();
  const tagOf = (line: string) => line.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  // Both jobs out to one runner: the first result waits for company.
  await say("PETO\nPETO\n");
  const t1 = tagOf((await reader.readLine())!);
  assert.equal(await reader.readLine(), "echo a");
  const t2 = tagOf((await reader.readLine())!);
  assert.equal(await reader.readLine(), "echo b");
  let t0 = performance.now();
  await say(`VICO/1 result ${t1}\nREZULTO echo a 0 0\n`);
  assert.equal(await reader.readLine(), `VICO/1 ack ${t1}`);
  const first = performance.now() - t0;
  assert.ok(first >= 350, `first ack after ${first} ms`);
  // The last one: nothing else can come, so its sync does not wait.
  t0 = performance.now();
  await say(`VICO/1 result ${t2}\nREZULTO echo b 0 0\n`);
  assert.equal(await reader.readLine(), `VICO/1 ack ${t2}`);
  const last = performance.now() - t0;
  assert.ok(last < 300, `last ack after ${last} ms`);
  await say("PETO\n");
  assert.equal(await reader.readLine(), "FINO");
  await say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
});

Deno.test("ManagerTextSession pipe=1 under --halt: a result's record does not wait the commit window", async () => {
  await using dir = await tempDir();
  const m = await pipeManager(dir.path, "echo a\n", { commitWindowMs: 400, settleBeforeNext: true });
  const { reader, say } = await m.connect();
  await say("PETO\n");
  const tag = (await reader.readLine())!.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  await reader.readLine();
  const t0 = performance.now();
  await say(`VICO/1 result ${tag}\nREZULTO echo a 0 0\n`);
  assert.equal(await reader.readLine(), `VICO/1 ack ${tag}`);
  const ms = performance.now() - t0;
  assert.ok(ms < 300, `ack after ${ms} ms`);
  await say("PETO\n");
  assert.equal(await reader.readLine(), "FINO");
  await say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
});

Deno.test("ManagerTextSession pipe=1: a result with an unknown tag or over maxout is ERARO and its jobs go back", async () => {
  for (const bad of ["unknown", "oversize"]) {
    await using dir = await tempDir();
    const m = await pipeManager(dir.path, "echo a\n");
    const { reader, say } = await m.connect();
    await say("PETO\n");
    const tag = (await reader.readLine())!.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
    assert.equal(await reader.readLine(), "echo a");
    if (bad === "unknown") await say(`VICO/1 result run=run1 key=nope attempt=1\nREZULTO echo a 0 0\n`);
    else await say(`VICO/1 result ${tag}\nREZULTO echo a 0 1001\n`);
    assert.match((await reader.readLine())!, /^ERARO /, bad);
    assert.equal(await reader.readLine(), null);
    // The job is pending again: a second runner takes it and settles it.
    const second = await m.connect();
    await second.say("PETO\n");
    const tag2 = (await second.reader.readLine())!.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
    assert.equal(await second.reader.readLine(), "echo a");
    await second.say(`VICO/1 result ${tag2}\nREZULTO echo a 0 0\nPETO\n`);
    const rest = [(await second.reader.readLine())!, (await second.reader.readLine())!].sort();
    assert.deepEqual(rest, ["FINO", `VICO/1 ack ${tag2}`].sort());
    await second.say("FINO ANKAU\n");
    await m.scheduler.done;
    await m.close();
    assert.equal(readJournal(dir.path).filter((r) => r.type === "job").length, 1, bad);
  }
});

Deno.test("ManagerTextSession: a runner that wants only tag gets the lock-step exchange (PRETA, RICEVIS)", async () => {
  await using dir = await tempDir();
  const m = await pipeManager(dir.path, "echo a\n");
  const { reader, say, ok } = await m.connect("tag");
  assert.equal(ok, "VICO/1 ok tag=1");
  await say("PETO\n");
  const tag = (await reader.readLine())!.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  assert.equal(await reader.readLine(), "echo a");
  await say(`VICO/1 result ${tag}\nREZULTO echo a 0 2\n`);
  assert.equal(await reader.readLine(), "PRETA");
  await say("a\n");
  assert.equal(await reader.readLine(), "RICEVIS");
  await say("PETO\n");
  assert.equal(await reader.readLine(), "FINO");
  await say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
});

Deno.test("ManagerTextSession pipe=1: a result that arrives while another attempt of its job commits waits for it, then is a duplicate: acked, recorded once, reading goes on", async () => {
  await using dir = await tempDir();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const m = await pipeManager(dir.path, "echo a\necho b\n", { commitGate: gate });
  const tagOf = (line: string) => line.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  // Runner ra takes echo a (attempt 1) and is lost before it reports: the job goes back.
  const a = await m.connect("tag,pipe", "ra");
  await a.say("PETO\n");
  const t1 = tagOf((await a.reader.readLine())!);
  assert.equal(await a.reader.readLine(), "echo a");
  a.runner.close();
  // Runner rb takes it again (attempt 2).
  const b = await m.connect("tag,pipe", "rb");
  await b.say("PETO\n");
  const t2 = tagOf((await b.reader.readLine())!);
  assert.match(t2, /attempt=2$/);
  assert.equal(await b.reader.readLine(), "echo a");
  // ra comes back holding its attempt-1 result, which the manager still wants, and delivers it: its commit is slow.
  const back = await m.connect("tag,pipe", "ra", [`${t1} echo a`]);
  assert.equal(back.ok, "VICO/1 ok tag=1 pipe=1");
  await back.say(`VICO/1 result ${t1}\nREZULTO echo a 0 3\nra\n`);
  await new Promise((r) => setTimeout(r, 20));
  // rb's result comes while that commit is in flight, then its PETO: the PETO is answered meanwhile.
  await b.say(`VICO/1 result ${t2}\nREZULTO echo a 0 3\nrb\nPETO\n`);
  const t3 = tagOf((await b.reader.readLine())!);
  assert.equal(await b.reader.readLine(), "echo b", "the next job goes out while the duplicate waits");
  open();
  assert.equal(await back.reader.readLine(), `VICO/1 ack ${t1}`);
  assert.equal(await b.reader.readLine(), `VICO/1 ack ${t2}`, "the duplicate is acknowledged once the winner settled");
  await b.say(`VICO/1 result ${t3}\nREZULTO echo b 0 0\nPETO\n`);
  assert.equal(await b.reader.readLine(), `VICO/1 ack ${t3}`);
  assert.equal(await b.reader.readLine(), "FINO");
  await b.say("FINO ANKAU\n");
  await back.say("PETO\n");
  assert.equal(await back.reader.readLine(), "FINO");
  await back.say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
  const records = readJournal(dir.path).filter((r) => r.type === "job");
  assert.equal(records.filter((r) => r.type === "job" && r.command === "echo a").length, 1, "recorded once");
  const recorded = records.find((r) => r.type === "job" && r.command === "echo a")!;
  assert.equal(recorded.type === "job" && recorded.attempt, 1, "the attempt that committed first is the record");
});

Deno.test("ManagerTextSession pipe=1: a durable ack waits (at most ACK_HOLD_MS) to ride in one write with the next job", async () => {
  await using dir = await tempDir();
  const list = Array.from({ length: 8 }, (_, i) => `echo ${i}\n`).join("");
  // Commits as fast as the disk (no commit window): the ack is durable before the next PETO comes.
  const m = await pipeManager(dir.path, list, { commitWindowMs: 0 });
  const { runner, reader, say } = await m.connect();
  const tagOf = (line: string) => line.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
  await say("PETO\n");
  let tag = tagOf((await reader.readLine())!);
  let command = (await reader.readLine())!;
  // A result alone: its ack is held, then goes out by itself within the hold.
  const sent = performance.now();
  await say(`VICO/1 result ${tag}\nREZULTO ${command} 0 0\n`);
  assert.equal(await reader.readLine(), `VICO/1 ack ${tag}`);
  assert.ok(performance.now() - sent < ACK_HOLD_MS + 1000, "held no longer than the hold (and a commit)");
  await say("PETO\n");
  tag = tagOf((await reader.readLine())!);
  command = (await reader.readLine())!;
  // A result, then a PETO once its commit is likely durable: the ack and the next job come in one read
  // (a slow disk may miss the window once; not every time).
  let rode = false;
  const chunk = new Uint8Array(4096);
  for (let tries = 0; tries < 6 && !rode; tries++) {
    await say(`VICO/1 result ${tag}\nREZULTO ${command} 0 0\n`);
    await new Promise((r) => setTimeout(r, ACK_HOLD_MS / 2));
    await say("PETO\n");
    let text = "";
    const acked = `VICO/1 ack ${tag}\n`;
    while (!(text.includes(acked) && /\necho \d\n$|^echo \d\n$/.test(text.replace(acked, "")))) {
      const n = await runner.read(chunk);
      assert.ok(n !== null);
      const got = new TextDecoder().decode(chunk.subarray(0, n));
      if (text === "" && got.includes(acked) && /echo \d\n$/.test(got)) rode = true;
      text += got;
    }
    const lines = text.replace(acked, "").trimEnd().split("\n");
    tag = tagOf(lines[0]);
    command = lines[1];
  }
  assert.ok(rode, "an ack rode with the job in one write");
  // FINO ANKAU flushes what is held at once.
  await say(`VICO/1 result ${tag}\nREZULTO ${command} 0 0\nPETO\n`);
  const rest: string[] = [];
  while (!rest.includes("FINO")) {
    const line = (await reader.readLine())!;
    if (line.startsWith("VICO/1 job ")) {
      const next = (await reader.readLine())!;
      await say(`VICO/1 result ${tagOf(line)}\nREZULTO ${next} 0 0\nPETO\n`);
    } else rest.push(line);
  }
  await say("FINO ANKAU\n");
  while (true) {
    const line = await reader.readLine();
    if (line === null) break;
    rest.push(line);
  }
  assert.ok(rest.every((l) => l === "FINO" || l.startsWith("VICO/1 ack ")), rest.join(" | "));
  await m.scheduler.done;
  await m.close();
  assert.equal(readJournal(dir.path).filter((r) => r.type === "job").length, 8);
});
