/**
 * The real manager as a binary owner, driven frame by frame by a scripted
 * node: the owner's side of every transition, refusals, and frames in the
 * wrong state (each drops that one node; its task goes to another).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { ToNode } from "../../protocol/messages.ts";
import { startManagerOn, startManagerOnTasks, startNode } from "../helpers/entry_process.ts";
import { FramePeer } from "../helpers/frame_peer.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

async function frames(node: FramePeer, until: ToNode["kind"]): Promise<ToNode[]> {
  const seen: ToNode[] = [];
  while (true) {
    const f = await node.ownerFrame();
    if (f === null) throw new Error(`stream ended before ${until}; saw ${JSON.stringify(seen)}`);
    if (f.kind === "file") await node.reader.readExact(f.size);
    seen.push(f);
    if (f.kind === until) return seen;
    if (f.kind === "file" || f.kind === "run" || f.kind === "ret") await node.fromNode({ kind: "accept" });
    if (f.kind === "statusRequest") await node.fromNode({ kind: "status", value: 1 });
  }
}

Deno.test("owner: the whole exchange for a plain job, as the notes lay it out", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["echo from-a-scripted-node"]);
  await using _m = manager;
  using node = await FramePeer.connect(port);
  await node.fromNode({ kind: "join", version: "1.0", modules: [] });
  assert.deepEqual(await node.ownerFrame(), { kind: "accept" });
  assert.deepEqual(await node.ownerFrame(), { kind: "statusRequest" });
  await node.fromNode({ kind: "status", value: 1 });
  const file = await node.ownerFrame();
  assert.deepEqual(file, { kind: "file", name: "vico-job.sh", size: 26 });
  assert.equal(await node.text(26), "echo from-a-scripted-node\n");
  await node.fromNode({ kind: "accept" });
  assert.deepEqual(await node.ownerFrame(), { kind: "run", program: "vico-job.sh", log: "vico-job.log" });
  await node.fromNode({ kind: "accept" });
  assert.deepEqual(await node.ownerFrame(), { kind: "ret", name: "vico-job.log" });
  await node.fromNode({ kind: "accept" });
  assert.deepEqual(await node.ownerFrame(), { kind: "wait" });
  assert.deepEqual(await node.ownerFrame(), { kind: "start" });
  await node.fromNode({ kind: "started", time: "2026-11-22T16:32:33.109Z" });
  await node.fromNode({ kind: "status", value: 4 }); // unasked: tolerated
  await node.fromNode({ kind: "finished", status: 0 });
  assert.deepEqual(await node.ownerFrame(), { kind: "accept" });
  await node.fromNode({ kind: "result", size: 6, missing: false }, "hello\n");
  await node.fromNode({ kind: "leave" });
  assert.deepEqual(await node.ownerFrame(), { kind: "accept" });
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  const [rec] = readRecords(results);
  assert.equal(rec.status, 0);
  assert.equal(Deno.readTextFileSync(join(results, rec.output!)), "hello\n");
  assert.equal(rec.host, "127.0.0.1");
});

Deno.test("owner: refuses a Join of another version, and one whose modules fit no task", async () => {
  await using dir = await tempDir();
  const { manager, port } = await startManagerOnTasks(dir.path, [{ command: "true", modules: ["matlab"] }]);
  await using _m = manager;
  {
    using node = await FramePeer.connect(port);
    await node.fromNode({ kind: "join", version: "2.0", modules: ["matlab"] });
    const f = await node.ownerFrame();
    assert.equal(f?.kind, "reject");
    assert.match((f as { reason: string }).reason, /unsupported version 2\.0/);
  }
  {
    using node = await FramePeer.connect(port);
    await node.fromNode({ kind: "join", version: "1.0", modules: ["sh", "python3"] });
    const f = await node.ownerFrame();
    assert.equal(f?.kind, "reject");
    assert.match((f as { reason: string }).reason, /no remaining task fits this node; they need modules matlab/);
  }
  await manager.waitFor(
    /No runner seen in the last 60s can take these: 1 job\(s\) need binary nodes with modules matlab/,
  );
  manager.kill("SIGTERM");
  assert.equal((await manager.exit()).code, 143);
});

Deno.test("owner: a node that rejects part of its task or breaks protocol is dropped; another finishes the job", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  // Three bad nodes in a row: allow more losses than the default 3.
  const { manager, port, results } = await startManagerOn(dir.path, ["echo finally"], ["--max-attempts", "5"]);
  await using _m = manager;
  // 1. Rejects the staged script.
  {
    using node = await FramePeer.connect(port);
    await node.fromNode({ kind: "join", version: "1.0", modules: [] });
    await node.ownerFrame();
    await node.ownerFrame();
    await node.fromNode({ kind: "status", value: 1 });
    const f = await node.ownerFrame();
    await node.reader.readExact((f as { size: number }).size);
    await node.fromNode({ kind: "reject", reason: "disk full" });
    const bye = await node.ownerFrame();
    assert.equal(bye?.kind, "disconnect");
    assert.match((bye as { reason: string }).reason, /node rejected the file vico-job\.sh: disk full/);
  }
  // 2. Sends Finished before being started (a single-node task is started at
  // once after Wait, so the Finished may meet the Start on the way).
  {
    using node = await FramePeer.connect(port);
    await node.fromNode({ kind: "join", version: "1.0", modules: [] });
    await frames(node, "wait");
    await node.fromNode({ kind: "finished", status: 0 });
    const seen = await frames(node, "disconnect").catch((e) => e);
    assert.ok(!(seen instanceof Error), String(seen));
    const bye = (seen as ToNode[]).at(-1) as { reason: string };
    assert.match(bye.reason, /Node sent a frame while waiting for Start|Expected Accept with the start time/);
  }
  // 3. Reports a status other than idle after Accept.
  {
    using node = await FramePeer.connect(port);
    await node.fromNode({ kind: "join", version: "1.0", modules: [] });
    await node.ownerFrame();
    await node.ownerFrame();
    await node.fromNode({ kind: "status", value: 4 });
    const bye = await node.ownerFrame();
    assert.match((bye as { reason: string }).reason, /Node reports status 4, not idle/);
  }
  // 4. Leaves while held at Join (nothing pending for it then? here: there is; it just goes).
  await using honest = startNode(port, ["--work-dir", work.path]);
  const [ms, hs] = await Promise.all([manager.exit(), honest.exit()]);
  assert.equal(hs.code, 0, honest.stderr);
  assert.equal(ms.code, 0);
  const records = readRecords(results);
  assert.equal(records.length, 1);
  assert.equal(records[0].attempt, 4, "three failed attempts, then the honest node");
  assert.match(manager.stderr, /Dropping node 127\.0\.0\.1:\d+ in state WaitingForInput: node rejected the file/);
});
