/**
 * Hostile and odd pipelined peers (`pipe=1`) against the real manager text
 * session, behind the real Server over an in-memory listener, with the real
 * scheduler, ledger, recorder and a durable results store
 * (docs/protocol.md, "Pipelined text exchange (`pipe=1`)").
 *
 * Each test checks the documented outcome: protocol errors are one
 * `ERARO <reason>` and a close, the jobs go back, and the manager keeps
 * serving other runners; everything else is recorded exactly once.
 */

import assert from "node:assert/strict";
import { MAX_PIPE_REQUESTS } from "../../../protocol/vico_extension.ts";
import { pipeManager, type PipeManagerOptions } from "../../helpers/pipe_manager.ts";
import { readJournal, tempDir } from "../../helpers/journal.ts";

const enc = new TextEncoder();

/** The shared pipe manager, its runners with a line reader that skips pulses and a `take` (PETO and its job). */
async function attackManager(dir: string, list: string, options: PipeManagerOptions = {}) {
  const m = await pipeManager(dir, list, options);
  const connect = async (id?: string) => {
    const { runner, reader, say, ok } = await m.connect("tag,pipe", id);
    /** Reads the next line that is not a pulse, within `ms`. */
    const line = async (ms = 5_000): Promise<string | null> => {
      while (true) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const got = await Promise.race([
            reader.readLine(),
            new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("no line in time")), ms))),
          ]);
          if (got !== "PULSO") return got;
        } finally {
          clearTimeout(timer);
        }
      }
    };
    /** PETO, and the job it gets: its tag (without seq=) and command. */
    const take = async () => {
      await say("PETO\n");
      const tagLine = (await line())!;
      assert.match(tagLine, /^VICO\/1 job /);
      return { tag: tagLine.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, ""), command: (await line())! };
    };
    return { runner, reader, say, ok, line, take };
  };
  return { ...m, connect };
}

type Peer = Awaited<ReturnType<Awaited<ReturnType<typeof attackManager>>["connect"]>>;

/** A second, honest runner drains what is left: every job it is given, recorded with output `ok`. */
async function drain(peer: Peer): Promise<void> {
  while (true) {
    await peer.say("PETO\n");
    const first = (await peer.line())!;
    if (first === "FINO") break;
    if (first.startsWith("VICO/1 ack ")) continue;
    const tag = first.replace(/^VICO\/1 job /, "").replace(/ seq=\d+$/, "");
    const command = (await peer.line())!;
    await peer.say(`VICO/1 result ${tag}\nREZULTO ${command} 0 3\nok\n`);
    assert.equal(await peer.line(), `VICO/1 ack ${tag}`);
  }
  await peer.say("FINO ANKAU\n");
  assert.equal(await peer.line(), null);
}

function jobRecords(dir: string) {
  return readJournal(dir).flatMap((r) => r.type === "job" ? [r] : []);
}

Deno.test("pipe attack: a result sent one byte at a time, raw bytes holding PULSO, PETO and FINO ANKAU lines, is taken as bytes", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\necho b\n", { pulse: 1 });
  const peer = await m.connect();
  assert.equal(peer.ok, "VICO/1 ok pulse=1 tag=1 pipe=1");
  const a = await peer.take();
  const b = await peer.take();
  const bytesA = "PULSO\nPETO\nFINO ANKAU\nVICO/1 result x\nREZULTO echo a 0 1\n";
  const bytesB = "\nPULSO\n";
  const burst = enc.encode(
    `VICO/1 result ${a.tag}\nREZULTO echo a 0 ${enc.encode(bytesA).length}\n${bytesA}` +
      `VICO/1 result ${b.tag}\nREZULTO echo b 7 ${bytesB.length}\n${bytesB}`,
  );
  for (let i = 0; i < burst.length; i++) await peer.say(burst.subarray(i, i + 1));
  assert.equal(await peer.line(), `VICO/1 ack ${a.tag}`);
  assert.equal(await peer.line(), `VICO/1 ack ${b.tag}`);
  await peer.say("PETO\n");
  assert.equal(await peer.line(), "FINO", "no PETO was read from inside the raw bytes");
  await peer.say("FINO ANKAU\n");
  assert.equal(await peer.line(), null);
  await m.scheduler.done;
  await m.close();
  const records = jobRecords(dir.path);
  assert.equal(records.length, 2);
  const out = (command: string) => {
    const r = records.find((r) => r.command === command)!;
    return Deno.readTextFileSync(`${dir.path}/${r.output}`);
  };
  assert.equal(out("echo a"), bytesA);
  assert.equal(out("echo b"), bytesB);
  assert.equal(records.find((r) => r.command === "echo b")!.status, 7);
});

Deno.test("pipe attack: results split at every point of the REZULTO line and of the raw bytes are recorded byte-exact", async () => {
  await using dir = await tempDir();
  const list = Array.from({ length: 6 }, (_, i) => `echo ${i}\n`).join("");
  const m = await attackManager(dir.path, list);
  const peer = await m.connect();
  const bodies: string[] = [];
  for (let i = 0; i < 6; i++) {
    const job = await peer.take();
    const body = `out ${i}\n`.repeat(i + 1);
    bodies.push(body);
    const msg = enc.encode(`VICO/1 result ${job.tag}\nREZULTO ${job.command} 0 ${body.length}\n${body}`);
    // Odd chunkings: split at i+1 points, in sizes 1, 2, 3, ... (inside the tag, REZULTO, bytes).
    let at = 0;
    for (let size = 1; at < msg.length; size = (size % (i + 3)) + 1) {
      await peer.say(msg.subarray(at, at + size));
      at += size;
    }
    assert.equal(await peer.line(), `VICO/1 ack ${job.tag}`);
  }
  await peer.say("PETO\n");
  assert.equal(await peer.line(), "FINO");
  await peer.say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
  const records = jobRecords(dir.path);
  assert.equal(records.length, 6);
  for (const r of records) {
    const i = Number(r.command.split(" ")[1]);
    assert.equal(Deno.readTextFileSync(`${dir.path}/${r.output}`), bodies[i]);
  }
});

Deno.test(`pipe attack: ${MAX_PIPE_REQUESTS} unanswered PETOs are held; one more is ERARO; the other runner goes on`, async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo only\n");
  // Runner A holds the only job: B's PETOs are held (jobs it could take run elsewhere).
  const a = await m.connect();
  const job = await a.take();
  const b = await m.connect();
  await b.say("PETO\n".repeat(MAX_PIPE_REQUESTS));
  await new Promise((r) => setTimeout(r, 100));
  // Nothing comes back (no ERARO) while 1,024 are unanswered.
  const first = b.reader.readLine();
  const early = await Promise.race([first, new Promise((r) => setTimeout(() => r("quiet"), 200))]);
  assert.equal(early, "quiet", `${MAX_PIPE_REQUESTS} unanswered PETOs are allowed`);
  await b.say("PETO\n");
  const eraro = await first;
  assert.match(eraro!, /^ERARO .*More than 1024 PETO unanswered/);
  assert.equal(await b.line(), null);
  // A still delivers; the run ends with one record.
  await a.say(`VICO/1 result ${job.tag}\nREZULTO echo only 0 3\nok\nPETO\n`);
  assert.deepEqual([(await a.line())!, (await a.line())!].sort(), ["FINO", `VICO/1 ack ${job.tag}`].sort());
  await a.say("FINO ANKAU\n");
  assert.equal(await a.line(), null);
  await m.scheduler.done;
  await m.close();
  assert.equal(jobRecords(dir.path).length, 1);
});

Deno.test(`pipe attack: ${MAX_PIPE_REQUESTS + 1} PETOs in one write are ERARO`, async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo only\n");
  const a = await m.connect();
  const job = await a.take();
  const b = await m.connect();
  await b.say("PETO\n".repeat(MAX_PIPE_REQUESTS + 1));
  assert.match((await b.line())!, /^ERARO /);
  assert.equal(await b.line(), null);
  await a.say(`VICO/1 result ${job.tag}\nREZULTO echo only 0 0\nPETO\n`);
  assert.deepEqual([(await a.line())!, (await a.line())!].sort(), ["FINO", `VICO/1 ack ${job.tag}`].sort());
  await a.say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
});

for (
  const [name, forged] of [
    ["a job never handed out", (_held: string, keyB: string) => `run=run1 key=${keyB} attempt=1`],
    ["a job handed to another runner", (_held: string, keyB: string) => `run=run1 key=${keyB} attempt=1`],
    ["a tag of another run", (held: string) => held.replace(/^run=run1 /, "run=run2 ")],
    ["an attempt never issued", (held: string) => held.replace(/attempt=1$/, "attempt=7")],
  ] as const
) {
  Deno.test(`pipe attack: a result for ${name} is ERARO before its bytes are read; its jobs go back; others served`, async () => {
    await using dir = await tempDir();
    const m = await attackManager(dir.path, "echo a\necho b\n");
    const evil = await m.connect();
    const held = await evil.take();
    if (name === "a job handed to another runner") {
      const other = await m.connect();
      await other.take();
      other.runner.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    const tag = forged(held.tag, m.keyOf(1));
    const command = tag.includes(m.keyOf(1)) ? "echo b" : "echo a";
    // The raw bytes are a valid PETO line: they must not be read as one.
    await evil.say(`VICO/1 result ${tag}\nREZULTO ${command} 0 5\nPETO\n`);
    assert.match((await evil.line())!, /^ERARO .*(does not hold|was not given)/);
    assert.equal(await evil.line(), null);
    const honest = await m.connect();
    await drain(honest);
    await m.scheduler.done;
    await m.close();
    const records = jobRecords(dir.path);
    assert.deepEqual(records.map((r) => r.command).sort(), ["echo a", "echo b"]);
    for (const r of records) assert.equal(Deno.readTextFileSync(`${dir.path}/${r.output}`), "ok\n");
  });
}

Deno.test("pipe attack: the same result sent twice back to back (anonymous runner): one record; the first is acked before the drop", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\necho b\n");
  const peer = await m.connect();
  const a = await peer.take();
  const once = `VICO/1 result ${a.tag}\nREZULTO echo a 0 3\nab\n`;
  await peer.say(once + once);
  // The second names a hand-out that has delivered: not one "that may deliver" (the commit authority), a
  // protocol error. The first was read whole: it commits and must not be recorded twice.
  const lines: string[] = [];
  while (true) {
    const l = await peer.line();
    if (l === null) break;
    lines.push(l);
  }
  // Observed: only the ERARO (the first result commits, its ack never goes out). The identified runner's
  // copy of this test gets two acks instead: the session's #jobTagged looks at this connection's hand-outs
  // only, the ledger (which calls a spent attempt a duplicate) is never asked.
  assert.ok(lines.some((l) => l.startsWith("ERARO ")) || lines.includes(`VICO/1 ack ${a.tag}`), lines.join(" | "));
  const honest = await m.connect();
  await drain(honest);
  await m.scheduler.done;
  await m.close();
  const records = jobRecords(dir.path);
  assert.equal(records.filter((r) => r.command === "echo a").length, 1, "echo a recorded once");
  assert.equal(Deno.readTextFileSync(`${dir.path}/${records.find((r) => r.command === "echo a")!.output}`), "ab\n");
  assert.equal(records.length, 2);
});

Deno.test("pipe attack: the same result sent twice back to back (identified runner) while it commits: read, discarded, acked twice, one record", async () => {
  await using dir = await tempDir();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const m = await attackManager(dir.path, "echo a\n", { commitGate: gate });
  const peer = await m.connect("svc");
  const a = await peer.take();
  const once = `VICO/1 result ${a.tag}\nREZULTO echo a 0 3\nab\n`;
  await peer.say(once + once + "PETO\n");
  await new Promise((r) => setTimeout(r, 50));
  open();
  const lines = [(await peer.line())!, (await peer.line())!, (await peer.line())!];
  assert.deepEqual(lines, [`VICO/1 ack ${a.tag}`, `VICO/1 ack ${a.tag}`, "FINO"]);
  await peer.say("FINO ANKAU\n");
  assert.equal(await peer.line(), null);
  await m.scheduler.done;
  await m.close();
  assert.equal(jobRecords(dir.path).length, 1);
});

Deno.test("pipe attack: FINO ANKAU right behind a result still committing: the result is committed and acked before the close", async () => {
  await using dir = await tempDir();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const m = await attackManager(dir.path, "echo a\necho b\n", { commitGate: gate });
  const peer = await m.connect();
  const a = await peer.take();
  const b = await peer.take();
  // No job left: the PETO is held (the two out may come back), and the runner stops: FINO at once.
  await peer.say("PETO\nVICO/1 leave\n");
  assert.equal(await peer.line(), "FINO");
  await peer.say(`VICO/1 result ${a.tag}\nREZULTO echo a 0 2\na\nVICO/1 result ${b.tag}\nREZULTO echo b 0 2\nb\n`);
  await peer.say("FINO ANKAU\n");
  await new Promise((r) => setTimeout(r, 50));
  open();
  assert.equal(await peer.line(), `VICO/1 ack ${a.tag}`);
  assert.equal(await peer.line(), `VICO/1 ack ${b.tag}`);
  assert.equal(await peer.line(), null);
  await m.scheduler.done;
  await m.close();
  assert.equal(jobRecords(dir.path).length, 2);
});

Deno.test("pipe attack: FINO ANKAU with PETOs held and no FINO sent is ERARO; the other runner goes on", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo only\n");
  const a = await m.connect();
  const job = await a.take();
  const b = await m.connect();
  await b.say("PETO\nPETO\nFINO ANKAU\n");
  assert.match((await b.line())!, /^ERARO .*FINO ANKAU before FINO/);
  assert.equal(await b.line(), null);
  await a.say(`VICO/1 result ${job.tag}\nREZULTO echo only 0 0\nPETO\n`);
  assert.deepEqual([(await a.line())!, (await a.line())!].sort(), ["FINO", `VICO/1 ack ${job.tag}`].sort());
  await a.say("FINO ANKAU\n");
  await m.scheduler.done;
  await m.close();
  assert.equal(jobRecords(dir.path).length, 1);
});

Deno.test("pipe attack: FINO ANKAU after FINO with more PETOs unanswered closes cleanly (each PETO gets FINO or the close)", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo only\n");
  const a = await m.connect();
  const job = await a.take();
  await a.say(`VICO/1 result ${job.tag}\nREZULTO echo only 0 0\nPETO\n`);
  assert.deepEqual([(await a.line())!, (await a.line())!].sort(), ["FINO", `VICO/1 ack ${job.tag}`].sort());
  await a.say("PETO\nPETO\nPETO\nFINO ANKAU\n");
  const rest: string[] = [];
  while (true) {
    const l = await a.line();
    if (l === null) break;
    rest.push(l);
  }
  assert.ok(rest.every((l) => l === "FINO"), rest.join(" | "));
  await m.scheduler.done;
  await m.close();
  assert.equal(jobRecords(dir.path).length, 1);
});

Deno.test("pipe attack: PULSO between a result's tag line and its REZULTO is a protocol error (nothing inside a message)", async () => {
  // docs/protocol.md: "Neither side puts anything inside another message: nothing between a result's tag
  // line, its REZULTO and its last raw byte"; PULSO is sent "between whole messages"; and (tag=1) "a tag line
  // not followed by REZULTO ... is a protocol error". Expected: ERARO and close.
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\n", { pulse: 1 });
  const peer = await m.connect();
  const a = await peer.take();
  await peer.say(`VICO/1 result ${a.tag}\nPULSO\nREZULTO echo a 0 0\n`);
  const lines: string[] = [];
  while (true) {
    const l = await peer.reader.readLine();
    if (l === null || l.startsWith("ERARO ") || l.startsWith("VICO/1 ack ")) {
      if (l !== null) lines.push(l);
      break;
    }
    lines.push(l);
  }
  peer.runner.close();
  await m.close();
  assert.ok(lines.some((l) => l.startsWith("ERARO ")), `expected ERARO, got: ${lines.join(" | ")}`);
});

Deno.test("pipe stop: VICO/1 leave answers a held PETO FINO at once and FINO ANKAU follows with no FINO before; a job given back (VICO/1 back) runs elsewhere with no loss counted", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\necho b\n");
  const busy = await m.connect();
  const a = await busy.take();
  const b = await busy.take();
  // An idle runner's PETO is held while a and b run elsewhere; leaving, it gets FINO now, not when they end.
  const idle = await m.connect();
  await idle.say("PETO\nVICO/1 leave\n");
  assert.equal(await idle.line(1000), "FINO");
  await idle.say("FINO ANKAU\n");
  assert.equal(await idle.line(), null);
  // The busy runner stops: it gives b back unstarted, and its running job a is recorded.
  await busy.say(`VICO/1 leave\nVICO/1 back ${b.tag}\nVICO/1 result ${a.tag}\nREZULTO echo a 0 3\nok\n`);
  assert.equal(await busy.line(), `VICO/1 ack ${a.tag}`);
  await busy.say("FINO ANKAU\n");
  assert.equal(await busy.line(), null);
  const b2 = m.scheduler.queue.stateOf(1);
  assert.equal(m.scheduler.queue.losses(1), 0, `b went back without a loss (state ${b2})`);
  await drain(await m.connect());
  await m.scheduler.done;
  await m.close();
  const records = jobRecords(dir.path);
  assert.deepEqual(records.map((r) => [r.command, r.attempt]).sort(), [["echo a", 1], ["echo b", 2]]);
  assert.equal(records.filter((r) => r.lost !== undefined).length, 0);
});

Deno.test("pipe stop: VICO/1 back for a job this runner does not hold, or has reported, is a protocol error; the job stays its holder's", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\necho b\n");
  const holder = await m.connect();
  const a = await holder.take();
  const forger = await m.connect();
  await forger.say(`VICO/1 leave\nVICO/1 back ${a.tag}\n`);
  assert.match((await forger.line())!, /^ERARO .*does not hold/);
  assert.equal(await forger.line(), null);
  // Reported, then given back: refused, and the result stands.
  await holder.say(`VICO/1 result ${a.tag}\nREZULTO echo a 0 3\nok\nVICO/1 leave\nVICO/1 back ${a.tag}\n`);
  // Its ack may still be held (it rides with the next message) when the ERARO goes: the result is durable either way.
  let next = (await holder.line())!;
  if (next === `VICO/1 ack ${a.tag}`) next = (await holder.line())!;
  assert.match(next, /^ERARO .*does not hold/);
  await drain(await m.connect());
  await m.scheduler.done;
  await m.close();
  const records = jobRecords(dir.path);
  assert.deepEqual(records.map((r) => [r.command, r.attempt]).sort(), [["echo a", 1], ["echo b", 1]]);
});

Deno.test("pipe stop: a runner lost after VICO/1 leave (no FINO ANKAU) costs a loss to the job it held only, none to the one it gave back", async () => {
  await using dir = await tempDir();
  const m = await attackManager(dir.path, "echo a\necho b\n");
  const peer = await m.connect();
  const a = await peer.take();
  const b = await peer.take();
  // A PETO after them is answered FINO: the manager has read both lines. Then the runner dies holding a.
  await peer.say(`VICO/1 leave\nVICO/1 back ${b.tag}\nPETO\n`);
  assert.equal(await peer.line(), "FINO");
  peer.runner.close();
  const second = await m.connect();
  await drain(second);
  await m.scheduler.done;
  await m.close();
  assert.equal(m.scheduler.queue.losses(0), 1, "a was held when its runner was lost");
  assert.equal(m.scheduler.queue.losses(1), 0, "b was given back");
  const records = jobRecords(dir.path);
  assert.deepEqual(records.map((r) => [r.command, r.attempt]).sort(), [["echo a", 2], ["echo b", 2]]);
  assert.ok(a.tag.endsWith("attempt=1"));
});
