/**
 * The vico extension in practice: negotiation and fallback, pulses that
 * notice a paused (SIGSTOP) runner or node, and job timeouts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startManagerOn, startManagerOnTasks, startNode, startRunner } from "../helpers/entry_process.ts";
import { readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LineServer } from "../helpers/line_peer.ts";
import { FramePeer } from "../helpers/frame_peer.ts";
import { NodeStatus } from "../../protocol/messages.ts";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { PULSE_LINE } from "../../protocol/vico_extension.ts";
import { SILENT_PULSES } from "../../manager/sessions/owner_session.ts";

const dec = new TextDecoder();

Deno.test("runner: speaks the vico hello first, and falls back to the plain protocol when the manager refuses it", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--name", "n"]);
  {
    using first = await server.accept();
    assert.equal(await first.read(), "VICO/1 hello proto=text want=pulse,tag,pipe");
    // A manager that only knows the drafts: closes on an unknown first byte.
  }
  using plain = await server.accept();
  assert.equal(await plain.read(), "SALUTON; MI n");
  await plain.line("VERSIO 1.1");
  assert.equal(await plain.read(), "KOMPRENAS");
  assert.equal(await plain.read(), "PETO");
  await plain.line("FINO");
  assert.deepEqual(await plain.rest(), ["FINO ANKAU"]);
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.match(runner.stderr, /does not speak the vico extension; using the plain protocol/);
});

Deno.test("manager: a paused runner (SIGSTOP) is noticed by its missing pulses and its jobs go to another", async () => {
  await using dir = await tempDir();
  const jobs = ["sleep 0.5; echo one", "sleep 0.5; echo two"];
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--pulse", "1s"]);
  await using _m = manager;
  await using paused = startRunner(port, ["--workers", "2", "--name", "paused"]);
  await manager.waitFor(/Runner paused joined/);
  await new Promise((r) => setTimeout(r, 200));
  paused.kill("SIGSTOP");
  const t0 = performance.now();
  await manager.waitFor(/Lost runner paused .*silent for \d+s \(no pulse\)/, 15_000);
  const noticed = performance.now() - t0;
  assert.ok(noticed < 6000, `noticed after ${noticed.toFixed(0)} ms (3 pulses of 1 s, checked every second)`);
  await using other = startRunner(port, ["--name", "other"]);
  const [ms] = await Promise.all([manager.exit(), other.exit()]);
  assert.equal(ms.code, 0);
  assert.deepEqual(readRecords(results).map((r) => r.host), ["other", "other"]);
  paused.kill("SIGKILL");
});

Deno.test("manager: its own pause (SIGSTOP past three pulses) drops no runner: on SIGCONT it reads their pulses and goes on", async () => {
  await using dir = await tempDir();
  const { manager, port } = await startManagerOn(dir.path, ["sleep 30"], ["--pulse", "1s"]);
  await using _m = manager;
  // A runner of our own that pulses every second and never judges the manager's silence (a real runner gives up
  // after four pulses, so a pause long enough to test the manager's three would end it from its side).
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new BufferedReader({ read: (b) => conn.read(b) });
  const send = (line: string) => conn.write(new TextEncoder().encode(line + "\n"));
  await send("VICO/1 hello proto=text want=pulse");
  assert.match((await reader.readLine()) ?? "", /^VICO\/1 ok .*pulse=1\b/);
  await send("SALUTON; MI steady");
  await reader.readLine(); // VERSIO
  await send("KOMPRENAS");
  await send("PETO");
  assert.equal(await reader.readLine(), "sleep 30", "it holds the job");
  let answered = 0;
  const reading = (async () => {
    while ((await reader.readLine().catch(() => null)) === PULSE_LINE) answered++;
  })();
  const pulses = setInterval(() => void send(PULSE_LINE).catch(() => {}), 1000);
  try {
    await new Promise((r) => setTimeout(r, 1500));
    // Stopped for 5 s (Ctrl-Z, a suspended VM): the runner's pulses wait in its socket, unread.
    manager.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 5000));
    const before = answered;
    manager.kill("SIGCONT");
    await new Promise((r) => setTimeout(r, 2500));
    assert.doesNotMatch(manager.stderr, /Lost runner steady|silent for/, "its own pause is not the runner's silence");
    assert.ok(answered > before, "it answers the runner's pulses again: the connection is there");
  } finally {
    clearInterval(pulses);
    conn.close();
    await reading;
    manager.kill("SIGKILL");
  }
});

Deno.test("manager: a paused binary node is noticed by its unanswered Status probes", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const tasks = [{ command: "sleep 1; echo done", return: [] }];
  const { manager, port, results } = await startManagerOnTasks(dir.path, tasks, ["--pulse", "1s"]);
  await using _m = manager;
  await using paused = startNode(port, ["--work-dir", work.path]);
  await manager.waitFor(/Node 127\.0\.0\.1 joined/);
  await new Promise((r) => setTimeout(r, 300));
  paused.kill("SIGSTOP");
  await manager.waitFor(/Lost node .*Node silent for \d+s \(no Status reply\)/, 15_000);
  await using other = startNode(port, ["--work-dir", work.path]);
  const [ms] = await Promise.all([manager.exit(), other.exit()]);
  assert.equal(ms.code, 0);
  const [rec] = readRecords(results);
  assert.equal(rec.attempt, 2);
  assert.equal(dec.decode(readOutput(results, rec)), "done\n");
  paused.kill("SIGKILL");
});

Deno.test("manager --timeout: a vico runner ends a job that runs too long (status as for the signal)", async () => {
  await using dir = await tempDir();
  const jobs = ["echo begun; sleep 281.4; echo never", "echo quick"];
  const { manager, port, results } = await startManagerOn(dir.path, jobs, ["--timeout", "700ms"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2"]);
  const [ms] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 1);
  const [slow, quick] = readRecords(results).sort((a, b) => a.line - b.line);
  assert.equal(slow.status, 143);
  assert.equal(dec.decode(readOutput(results, slow)), "begun\n");
  assert.equal(quick.status, 0);
  assert.match(runner.stderr, /ran past its 0\.7s limit and was stopped/);
});

Deno.test("manager --timeout: a plain runner is warned about, and its jobs run unlimited", async () => {
  await using dir = await tempDir();
  const { manager, port } = await startManagerOn(dir.path, ["sleep 0.3; echo ok"], ["--timeout", "100ms"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--plain", "--name", "old"]);
  const [ms] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 0);
  assert.match(manager.stderr, /Runner old speaks the plain protocol: --timeout cannot be enforced/);
});

/** What a scripted node does before it goes silent: the owner's state it leaves it in. */
type SilentIn = "Idle" | "WaitingForInput" | "Finished" | "BeforeLeave" | "Staging";

/**
 * Drives a scripted binary node through its task up to `state`, then sends
 * nothing and reads nothing more (the socket stays open, as for a paused
 * peer). Answers Status with the value of the state it is in until then.
 */
async function goSilentIn(node: FramePeer, state: SilentIn): Promise<void> {
  await node.fromNode({ kind: "join", version: "1.0", modules: [] });
  assert.deepEqual(await node.ownerFrame(), { kind: "accept" });
  if (state === "Idle") return;
  let value: number = NodeStatus.IDLE;
  let rets = 0;
  while (true) {
    const f = await node.ownerFrame(15_000);
    if (f === null) throw new Error(`stream ended before the node went silent in ${state}`);
    if (f.kind === "statusRequest") {
      await node.fromNode({ kind: "status", value });
      continue;
    }
    if (f.kind === "file") {
      if (state === "Staging") {
        // Takes the first MiB of the big input, then stops reading.
        await node.reader.readExact(1 << 20);
        return;
      }
      await node.reader.readExact(f.size);
      if (state === "WaitingForInput") return;
    }
    if (f.kind === "ret") rets++;
    if (f.kind === "file" || f.kind === "run" || f.kind === "ret") {
      value = NodeStatus.WAITING_FOR_INPUT;
      await node.fromNode({ kind: "accept" });
    }
    if (f.kind === "wait") value = NodeStatus.READY_TO_START;
    if (f.kind === "start") {
      await node.fromNode({ kind: "started", time: new Date().toISOString() });
      await node.fromNode({ kind: "finished", status: 0 });
      value = NodeStatus.FINISHED;
    }
    if (f.kind === "accept") {
      // Finished was accepted.
      if (state === "Finished") return;
      for (let i = 0; i < rets; i++) await node.fromNode({ kind: "result", size: 0, missing: true });
      return;
    }
  }
}

/**
 * A scripted node goes silent in `state` with the only task; a real binary
 * node waits meanwhile. The silent one must be dropped within about three
 * pulses (or the transfer timeout mid-staging) and the other must run the task.
 */
async function silentNodeLosesItsTask(state: SilentIn, stateLogged: string): Promise<void> {
  await using dir = await tempDir();
  await using work = await tempDir();
  const big = join(dir.path, "big.bin");
  if (state === "Staging") {
    // Far more than the loopback socket buffers hold.
    using f = await Deno.open(big, { create: true, write: true });
    await f.truncate(64 << 20);
  }
  const task = state === "Staging"
    ? { command: "wc -c < big.bin", files: ["big.bin"] }
    : { command: "echo done", return: [] };
  const { manager, port, results } = await startManagerOnTasks(dir.path, [task], [
    "--pulse",
    "1s",
    "--transfer-timeout",
    "1s",
  ]);
  await using _m = manager;
  using silent = await FramePeer.connect(port);
  await goSilentIn(silent, state);
  const t0 = performance.now();
  await using other = startNode(port, ["--work-dir", work.path]);
  const lost = new RegExp(`Lost node 127\\.0\\.0\\.1:\\d+ in state ${stateLogged}: .*its task goes back to the queue`);
  await manager.waitFor(lost, 15_000);
  const noticed = performance.now() - t0;
  const bound = SILENT_PULSES * 1000 + 3000;
  assert.ok(noticed < bound, `noticed after ${noticed.toFixed(0)} ms (bound ${bound} ms)`);
  const [ms] = await Promise.all([manager.exit(30_000), other.exit(30_000)]);
  assert.equal(ms.code, 0, manager.stderr);
  const recs = readRecords(results);
  assert.equal(recs.length, 1);
  assert.equal(recs[0].status, 0);
  const expected = state === "Staging" ? `${64 << 20}\n` : "done\n";
  assert.equal(dec.decode(readOutput(results, recs[0])).trim(), expected.trim());
}

Deno.test("OwnerSession: a node silent in Idle (no Status reply) loses its task within three pulses", async () => {
  await silentNodeLosesItsTask("Idle", "Idle");
});

Deno.test("OwnerSession: a node silent in WaitingForInput (no Accept for a File) loses its task within three pulses", async () => {
  await silentNodeLosesItsTask("WaitingForInput", "WaitingForInput");
});

Deno.test("OwnerSession: a node silent in Finished before its Results loses its task within three pulses", async () => {
  await silentNodeLosesItsTask("Finished", "Finished");
});

Deno.test("OwnerSession: a node silent after its Results, before Leave, loses its task within three pulses", async () => {
  await silentNodeLosesItsTask("BeforeLeave", "Finished");
});

Deno.test("OwnerSession: a node that stops reading mid-staging of a large File loses its task after the transfer timeout", async () => {
  await silentNodeLosesItsTask("Staging", "WaitingForInput");
});

Deno.test("OwnerSession: a gang member waiting in Leaving for the others is kept alive with Status (persist nodes take no owner for lost)", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  await using s1 = await tempDir();
  await using s2 = await tempDir();
  // The first member to get there ends at once; the other runs 6 s, longer than 4 pulses.
  const command = `mkdir ${join(dir.path, "first")} 2>/dev/null || sleep 6; echo ok`;
  const tasks = [{ name: "gang", command, nodes: 2 }];
  const { manager, port, results } = await startManagerOnTasks(dir.path, tasks, ["--pulse", "1s"]);
  await using _m = manager;
  const node = (state: string) =>
    startNode(port, [
      "--persist",
      "--state-dir",
      state,
      "--work-dir",
      work.path,
      "--retry-max",
      "1s",
    ]);
  await using a = node(s1.path);
  await using b = node(s2.path);
  assert.equal((await manager.exit(30_000)).code, 0, manager.stderr);
  const [rec] = readRecords(results);
  assert.equal(rec.nodes?.length, 2);
  assert.equal(rec.attempt, 1, manager.stderr);
  assert.doesNotMatch(manager.stderr, /in state (Finished|Leaving)/);
  for (const r of [a, b]) {
    r.kill("SIGTERM");
    await r.exit();
    assert.doesNotMatch(r.stderr, /in state Leaving|silent/, r.stderr);
  }
});

/** Whether a process exists and is not a zombie (orphans may never be reaped where pid 1 is no init). */
async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", 'read -r s < "/proc/$0/stat" 2>/dev/null || exit 1; s=${s##*) }; [ "${s%% *}" != Z ]', String(pid)],
  }).output();
  return out.success;
}

Deno.test("manager --timeout: a job is ended at its limit though a process that left its group holds its output; what it left in its group goes with it", async () => {
  await using dir = await tempDir();
  const escaped = join(dir.path, "escaped");
  const left = join(dir.path, "left");
  const { manager, port, results } = await startManagerOn(dir.path, [
    `echo begun; setsid sleep 281.5 & echo $! > ${escaped}; sleep 281.6`,
    `sleep 281.7 >/dev/null & echo $! > ${left}; echo quick`,
  ], ["--timeout", "1s"]);
  await using _m = manager;
  const t0 = performance.now();
  await using runner = startRunner(port, ["--workers", "2"]);
  try {
    const [ms] = await Promise.all([manager.exit(30_000), runner.exit(30_000)]);
    const took = performance.now() - t0;
    assert.equal(ms.code, 1);
    assert.ok(took < 8000, `the run took ${took.toFixed(0)} ms for a 1 s limit`);
    const [slow, quick] = readRecords(results).sort((a, b) => a.line - b.line);
    assert.equal(slow.status, 143);
    assert.equal(dec.decode(readOutput(results, slow)), "begun\n");
    assert.equal(quick.status, 0);
    assert.equal(dec.decode(readOutput(results, quick)), "quick\n");
    assert.equal(await alive(Number(Deno.readTextFileSync(left))), false, "the job's leftover in its group is gone");
  } finally {
    for (const file of [escaped, left]) {
      const pid = Number(Deno.readTextFileSync(file).trim());
      if (pid > 1 && await alive(pid)) Deno.kill(pid, "SIGKILL");
    }
  }
});
