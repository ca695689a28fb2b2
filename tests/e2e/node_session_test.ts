/**
 * The real runner as a binary node (`--protocol binary`), driven frame by
 * frame by a scripted owner: every transition the draft draws, Status in
 * every state, messages in the wrong state, Stop, and path escapes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeStatus } from "../../protocol/messages.ts";
import { startNode } from "../helpers/entry_process.ts";
import { type FramePeer, FrameServer } from "../helpers/frame_peer.ts";
import { tempDir } from "../helpers/journal.ts";

const ps = () => new TextDecoder().decode(new Deno.Command("ps", { args: ["-eo", "args"] }).outputSync().stdout);

async function status(owner: FramePeer): Promise<number> {
  await owner.toNode({ kind: "statusRequest" });
  const f = await owner.nodeFrame();
  assert.equal(f?.kind, "status");
  return (f as { value: number }).value;
}

async function expectAccept(owner: FramePeer, what: string): Promise<void> {
  assert.deepEqual(await owner.nodeFrame(), { kind: "accept" }, what);
}

async function expectReject(owner: FramePeer, reason: RegExp): Promise<void> {
  const f = await owner.nodeFrame();
  assert.equal(f?.kind, "reject", `expected a Reject, got ${JSON.stringify(f)}`);
  assert.match((f as { reason: string }).reason, reason);
}

/** Starts a node against a scripted owner and accepts its Join. */
async function joined(server: FrameServer, work: string, modules = "") {
  const runner = startNode(server.port, ["--work-dir", work, ...(modules ? ["--modules", modules] : [])]);
  const owner = await server.accept();
  return { runner, owner };
}

Deno.test("node: a whole task, every transition of the draft, Status in every state", async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  const { runner, owner } = await joined(server, work.path, "sh,python3");
  await using _r = runner;
  using _o = owner;
  assert.deepEqual(await owner.nodeFrame(), { kind: "join", version: "1.0", modules: ["sh", "python3"] });
  assert.equal(await status(owner), NodeStatus.IDLE, "before the Join is answered");
  await owner.toNode({ kind: "accept" });
  assert.equal(await status(owner), NodeStatus.IDLE);
  await owner.file("in/deep/data.txt", "alpha\nbeta\n");
  await expectAccept(owner, "file");
  assert.equal(await status(owner), NodeStatus.WAITING_FOR_INPUT);
  await owner.file(
    "job.sh",
    "echo out; echo err >&2; sleep 0.5; mkdir out; sort -r in/deep/data.txt > out/sorted.txt\n",
  );
  await expectAccept(owner, "script without #!");
  await owner.file("two.py", "#!/bin/sh\necho second run >> out/sorted.txt\n");
  await expectAccept(owner, "script with #!");
  await owner.file("empty", "");
  await expectAccept(owner, "empty file");
  await owner.toNode({ kind: "run", program: "job.sh", log: "logs/job.log" });
  await expectAccept(owner, "run");
  await owner.toNode({ kind: "run", program: "two.py", log: "logs/job.log" });
  await expectAccept(owner, "second run, same log");
  for (const name of ["out/sorted.txt", "logs/job.log", "never/made.txt", "empty"]) {
    await owner.toNode({ kind: "ret", name });
    await expectAccept(owner, `ret ${name}`);
  }
  await Deno.mkdir(join(work.path, "dummy")); // the task directory is created by the node, not here
  await owner.toNode({ kind: "wait" });
  assert.equal(await status(owner), NodeStatus.READY_TO_START);
  await owner.toNode({ kind: "start" });
  const started = await owner.nodeFrame(true);
  assert.equal(started?.kind, "started");
  assert.match((started as { time: string }).time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(await status(owner), NodeStatus.WORKING);
  assert.deepEqual(await owner.nodeFrame(), { kind: "finished", status: 0 });
  assert.equal(await status(owner), NodeStatus.FINISHED);
  await owner.toNode({ kind: "accept" });
  const results: (string | null)[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await owner.nodeFrame();
    assert.equal(r?.kind, "result");
    const res = r as { size: number; missing: boolean };
    results.push(res.missing ? null : await owner.text(res.size));
  }
  assert.deepEqual(results, ["beta\nalpha\nsecond run\n", "out\nerr\n", null, ""]);
  assert.deepEqual(await owner.nodeFrame(), { kind: "leave" });
  assert.equal(await status(owner), NodeStatus.FINISHED, "Status is answered even while leaving");
  await owner.toNode({ kind: "accept" });
  assert.equal(await owner.nodeFrame(), null, "the session ends after Leave is accepted");
  // The node joins again for the next task; this owner has none.
  using again = await server.accept();
  assert.equal((await again.nodeFrame())?.kind, "join");
  await again.toNode({ kind: "disconnect", reason: "no more tasks" });
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.deepEqual([...Deno.readDirSync(work.path)].map((e) => e.name), ["dummy"], "task directory removed");
});

Deno.test("node: frames in the wrong state are rejected or end the session with a reason", async (t) => {
  await using work = await tempDir();
  using server = new FrameServer();
  await t.step("Start before Wait and Stop when idle: Reject; a bad Run: Reject", async () => {
    const { runner, owner } = await joined(server, work.path);
    await using _r = runner;
    using _o = owner;
    await owner.nodeFrame();
    await owner.toNode({ kind: "accept" });
    await owner.toNode({ kind: "start" });
    await expectReject(owner, /no Wait/);
    await owner.toNode({ kind: "stop" });
    await expectReject(owner, /nothing is running/);
    await owner.toNode({ kind: "run", program: "not-staged.sh", log: "l" });
    await expectReject(owner, /was not staged/);
    await owner.file("p.sh", "true");
    await expectAccept(owner, "file");
    await owner.toNode({ kind: "run", program: "p.sh", log: "p.sh" });
    await expectReject(owner, /would overwrite a staged file/);
    await owner.toNode({ kind: "disconnect", reason: "test over" });
    assert.equal((await runner.exit()).code, 1);
    assert.match(runner.stderr, /Owner disconnected in state WaitingForInput: test over/);
  });
  await t.step("File after Wait: Disconnect with a reason", async () => {
    const { runner, owner } = await joined(server, work.path);
    await using _r = runner;
    using _o = owner;
    await owner.nodeFrame();
    await owner.toNode({ kind: "accept" });
    await owner.toNode({ kind: "wait" });
    await owner.file("late.txt", "x");
    const f = await owner.nodeFrame();
    assert.equal(f?.kind, "disconnect");
    assert.match((f as { reason: string }).reason, /Frame file is not valid in state ReadyToStart/);
    assert.equal((await runner.exit()).code, 1);
  });
  await t.step("the reserved Task type and an Accept out of place: Disconnect", async () => {
    for (const bytes of [Uint8Array.of(0x06), Uint8Array.of(0x01)]) {
      const { runner, owner } = await joined(server, work.path);
      await using _r = runner;
      using _o = owner;
      await owner.nodeFrame();
      await owner.toNode({ kind: "accept" });
      await owner.send(bytes);
      const f = await owner.nodeFrame();
      assert.equal(f?.kind, "disconnect");
      assert.match((f as { reason: string }).reason, /reserved|not valid in state Idle/);
      assert.equal((await runner.exit()).code, 1);
    }
  });
  await t.step("a File length beyond what the node accepts: Disconnect before reading it", async () => {
    const { runner, owner } = await joined(server, work.path);
    await using _r = runner;
    using _o = owner;
    await owner.nodeFrame();
    await owner.toNode({ kind: "accept" });
    await owner.send(Uint8Array.of(0x13, 0, 1, 0x78, 0xff, 0xff, 0xff, 0xff));
    const f = await owner.nodeFrame();
    assert.match((f as { reason: string }).reason, /exceeds the limit/);
    assert.equal((await runner.exit()).code, 1);
  });
  await t.step("a Reject to Join ends the runner with exit 3 and the reason", async () => {
    const { runner, owner } = await joined(server, work.path, "matlab");
    await using _r = runner;
    using _o = owner;
    await owner.nodeFrame();
    await owner.toNode({ kind: "reject", reason: "no task needs matlab" });
    assert.equal((await runner.exit()).code, 3);
    assert.match(runner.stderr, /Manager refused this node: no task needs matlab/);
  });
});

Deno.test('NodeSession: Disconnect "no more tasks" after Accept, before anything is staged, ends the runner cleanly', async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  const { runner, owner } = await joined(server, work.path);
  await using _r = runner;
  using _o = owner;
  await owner.nodeFrame();
  await owner.toNode({ kind: "accept" });
  assert.equal(await status(owner), NodeStatus.IDLE);
  await owner.toNode({ kind: "disconnect", reason: "no more tasks" });
  const exit = await runner.exit(10_000);
  assert.equal(exit.code, 0, runner.stderr);
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "task directory removed");
});

Deno.test("NodeSession: a File that keeps moving, slower than the owner-silence window, is not taken for a lost owner", async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  // --persist speaks the vico extension, which agrees on pulses: an owner silent for 4 of them is lost.
  await using _runner = startNode(server.port, ["--persist", "--work-dir", work.path]);
  using owner = await server.accept();
  assert.match((await owner.reader.readLine()) ?? "", /^VICO\/1 hello proto=binary /);
  await owner.send("VICO/1 ok pulse=1\n");
  assert.equal((await owner.nodeFrame())?.kind, "join");
  await owner.toNode({ kind: "accept" });
  const bytes = "abcdef\n";
  await owner.toNode({ kind: "file", name: "slow.txt", size: bytes.length });
  for (const byte of bytes) {
    await owner.send(byte);
    await new Promise((r) => setTimeout(r, 900));
  }
  // 6.3 s in the middle of one File, no frame from the owner: still there.
  await expectAccept(owner, "the slow file");
  assert.equal(await status(owner), NodeStatus.WAITING_FOR_INPUT);
});

Deno.test("node: Stop ends the run's process group, answers Accept, reports Finished and partial results", async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  for (
    const [script, expected] of [["echo begun; sleep 287.1; echo never", 143], [
      "trap '' TERM; echo begun; sleep 286.1 & wait; wait",
      137,
    ]] as const
  ) {
    const { runner, owner } = await joined(server, work.path);
    await using _r = runner;
    using _o = owner;
    await owner.nodeFrame();
    await owner.toNode({ kind: "accept" });
    await owner.file("s.sh", script);
    await expectAccept(owner, "file");
    await owner.toNode({ kind: "run", program: "s.sh", log: "s.log" });
    await expectAccept(owner, "run");
    await owner.toNode({ kind: "ret", name: "s.log" });
    await expectAccept(owner, "ret");
    await owner.toNode({ kind: "wait" });
    await owner.toNode({ kind: "start" });
    assert.equal((await owner.nodeFrame(true))?.kind, "started");
    await new Promise((r) => setTimeout(r, 300));
    await owner.toNode({ kind: "stop" });
    await expectAccept(owner, "stop");
    assert.deepEqual(await owner.nodeFrame(undefined, 10_000), { kind: "finished", status: expected });
    assert.doesNotMatch(ps(), /sleep 28[67]\.1/, "the whole group is gone");
    await owner.toNode({ kind: "stop" });
    await expectReject(owner, /has finished/);
    await owner.toNode({ kind: "accept" });
    const r = await owner.nodeFrame();
    assert.equal(await owner.text((r as { size: number }).size), "begun\n", "partial log returned");
    assert.deepEqual(await owner.nodeFrame(), { kind: "leave" });
    await owner.toNode({ kind: "accept" });
    using again = await server.accept();
    await again.nodeFrame();
    await again.toNode({ kind: "disconnect", reason: "no more tasks" });
    assert.equal((await runner.exit()).code, 0);
  }
});

Deno.test("node: an owner that disconnects mid-run gets its run killed and its task directory removed", async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  const { runner, owner } = await joined(server, work.path);
  await using _r = runner;
  await owner.nodeFrame();
  await owner.toNode({ kind: "accept" });
  await owner.file("s.sh", "sleep 285.1");
  await expectAccept(owner, "file");
  await owner.toNode({ kind: "run", program: "s.sh", log: "s.log" });
  await expectAccept(owner, "run");
  await owner.toNode({ kind: "wait" });
  await owner.toNode({ kind: "start" });
  await owner.nodeFrame(true);
  await new Promise((r) => setTimeout(r, 300));
  assert.match(ps(), /sleep 285\.1/);
  owner[Symbol.dispose]();
  assert.equal((await runner.exit()).code, 1);
  assert.doesNotMatch(ps(), /sleep 285\.1/);
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "task directory removed");
});

Deno.test("node: names that escape the task directory are rejected and nothing outside is touched", async () => {
  await using work = await tempDir();
  await using outside = await tempDir();
  await Deno.writeTextFile(join(outside.path, "secret.txt"), "do not read");
  using server = new FrameServer();
  const { runner, owner } = await joined(server, work.path);
  await using _r = runner;
  using _o = owner;
  await owner.nodeFrame();
  await owner.toNode({ kind: "accept" });
  const escapes = [
    "../escaped.txt",
    `${outside.path}/abs.txt`,
    "a/../../escaped.txt",
    "a//b",
    "./x",
    "a\\..\\x",
    "nul\0byte",
  ];
  for (const name of escapes) {
    await owner.file(name, "evil");
    await expectReject(owner, /absolute|segment|backslash|NUL/);
  }
  // A run plants links to the outside; returns through them come back missing,
  // and a log named through them cannot be opened (it was opened before the run).
  await owner.file(
    "plant.sh",
    `ln -s ${outside.path} linkdir; ln -s ${outside.path}/secret.txt linkfile; echo planted`,
  );
  await expectAccept(owner, "file");
  await owner.toNode({ kind: "run", program: "plant.sh", log: "plant.log" });
  await expectAccept(owner, "run");
  for (const name of ["linkdir/secret.txt", "linkfile", "plant.log"]) {
    await owner.toNode({ kind: "ret", name });
    await expectAccept(owner, name);
  }
  await owner.toNode({ kind: "wait" });
  await owner.toNode({ kind: "start" });
  await owner.nodeFrame(true);
  assert.deepEqual(await owner.nodeFrame(), { kind: "finished", status: 0 });
  await owner.toNode({ kind: "accept" });
  assert.deepEqual(await owner.nodeFrame(), { kind: "result", size: 0, missing: true }, "linkdir/secret.txt");
  assert.deepEqual(await owner.nodeFrame(), { kind: "result", size: 0, missing: true }, "linkfile");
  const log = await owner.nodeFrame();
  assert.equal(await owner.text((log as { size: number }).size), "planted\n");
  assert.deepEqual(await owner.nodeFrame(), { kind: "leave" });
  await owner.toNode({ kind: "accept" });
  using again = await server.accept();
  await again.nodeFrame();
  await again.toNode({ kind: "disconnect", reason: "no more tasks" });
  assert.equal((await runner.exit()).code, 0);
  assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["secret.txt"], "nothing written outside");
  assert.equal(await Deno.readTextFile(join(outside.path, "secret.txt")), "do not read");
  assert.equal(await Deno.stat(join(work.path, "..", "escaped.txt")).catch(() => null), null);
});

Deno.test("node: a directory where a file should go, or a symlinked parent, is rejected", async () => {
  await using work = await tempDir();
  using server = new FrameServer();
  const { runner, owner } = await joined(server, work.path);
  await using _r = runner;
  using _o = owner;
  await owner.nodeFrame();
  await owner.toNode({ kind: "accept" });
  await owner.file("d/f.txt", "x");
  await expectAccept(owner, "file in d/");
  await owner.file("d", "x");
  await expectReject(owner, /is a directory/);
  await owner.file("d/f.txt/g", "x");
  await expectReject(owner, /is not a directory/);
  await owner.toNode({ kind: "disconnect", reason: "done" });
  await runner.exit();
});

Deno.test("node: a link planted by an earlier run is not followed by a later log or return; long names and big files are refused", async () => {
  await using work = await tempDir();
  await using outside = await tempDir();
  const secret = join(outside.path, "secret.txt");
  await Deno.writeTextFile(secret, "do not read");
  using server = new FrameServer();
  const runner = startNode(server.port, ["--work-dir", work.path, "--max-file", "1K"]);
  await using _r = runner;
  using owner = await server.accept();
  await owner.nodeFrame();
  await owner.toNode({ kind: "accept" });
  // A name far beyond any file system's: refused, the session goes on.
  await owner.file("n".repeat(60_000), "x");
  await expectReject(owner, /name|long/i);
  // The first run swaps the second run's log for a link to the outside.
  await owner.file("one.sh", `ln -sf ${secret} two.log; ln -s ${outside.path} out; echo one`);
  await expectAccept(owner, "one.sh");
  await owner.file("two.sh", "echo overwritten");
  await expectAccept(owner, "two.sh");
  await owner.toNode({ kind: "run", program: "one.sh", log: "one.log" });
  await expectAccept(owner, "run one");
  await owner.toNode({ kind: "run", program: "two.sh", log: "two.log" });
  await expectAccept(owner, "run two");
  for (const name of ["two.log", "out/secret.txt"]) {
    await owner.toNode({ kind: "ret", name });
    await expectAccept(owner, name);
  }
  await owner.toNode({ kind: "wait" });
  await owner.toNode({ kind: "start" });
  await owner.nodeFrame(true);
  assert.equal((await owner.nodeFrame())?.kind, "finished");
  await owner.toNode({ kind: "accept" });
  const log = await owner.nodeFrame() as { kind: string; size: number; missing?: boolean };
  assert.equal(log.kind, "result");
  if (!log.missing) assert.equal(await owner.text(log.size), "overwritten\n", "its own output, not the outside file");
  assert.deepEqual(await owner.nodeFrame(), { kind: "result", size: 0, missing: true }, "out/secret.txt");
  assert.deepEqual(await owner.nodeFrame(), { kind: "leave" });
  await owner.toNode({ kind: "accept" });
  // The next session: a file over --max-file ends it before a byte is stored.
  using again = await server.accept();
  await again.nodeFrame();
  await again.toNode({ kind: "accept" });
  await again.toNode({ kind: "file", name: "big.bin", size: 1025 });
  const f = await again.nodeFrame();
  assert.equal(f?.kind, "disconnect");
  assert.match((f as { reason: string }).reason, /exceeds the limit/);
  assert.equal((await runner.exit()).code, 1);
  assert.equal(await Deno.readTextFile(secret), "do not read", "nothing written through the link");
  assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["secret.txt"]);
});
