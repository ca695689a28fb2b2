/**
 * The node pool (node loops and held tasks) against a scripted owner over
 * in-memory transports: no sockets.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { encodeToNode, readFromNode } from "../../../protocol/binary_codec.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { NO_MORE_TASKS, type ToNode } from "../../../protocol/messages.ts";
import { NodePool } from "../../../runner/binary/node_pool.ts";
import { RunnerState } from "../../../runner/service/runner_state.ts";
import { ManagerLink } from "../../../runner/connect/manager_link.ts";
import type { RunnerOptions } from "../../../runner/runner_options.ts";
import { MemoryListener } from "../../../transport/memory_transport.ts";
import type { Transport } from "../../../transport/transport.ts";

/** An owner's end of one connection. */
function ownerEnd(transport: Transport) {
  const reader = new BufferedReader(transport);
  return {
    frame: () => readFromNode(reader, DEFAULT_LIMITS),
    send: (msg: ToNode) => transport.write(encodeToNode(msg)),
    close: () => transport.close(),
  };
}

/** A pool of `workers` nodes whose link dials `listener`, in a fresh work directory. */
async function pool(listener: MemoryListener, workers = 1) {
  const workDir = await Deno.makeTempDir();
  const options: RunnerOptions = {
    hostname: "memory",
    port: 0,
    workers,
    protocol: "binary",
    workDir,
    connect: () => Promise.resolve(listener.connect()),
  };
  const link = new ManagerLink(options);
  return {
    link,
    pool: new NodePool(options, DEFAULT_LIMITS, link),
    [Symbol.asyncDispose]: () => Deno.remove(workDir, { recursive: true }),
  };
}

Deno.test("NodePool.run: the owner's no more tasks ends every node as finished", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener, 2);
  const ending = p.pool.run({});
  const owners = [];
  const accepted = listener[Symbol.asyncIterator]();
  for (let i = 0; i < 2; i++) owners.push(ownerEnd((await accepted.next()).value!));
  for (const owner of owners) {
    assert.equal((await owner.frame())?.kind, "join");
    await owner.send({ kind: "disconnect", reason: NO_MORE_TASKS });
  }
  assert.deepEqual(await ending, { kind: "finished", jobs: 0 });
  assert.equal(p.link.connected, true);
  for (const owner of owners) owner.close();
  listener.close();
});

Deno.test("NodePool.run: a Reject before any task refuses the node, with the owner's reason", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const owner = ownerEnd((await listener[Symbol.asyncIterator]().next()).value!);
  assert.equal((await owner.frame())?.kind, "join");
  await owner.send({ kind: "reject", reason: "no task fits this node's modules" });
  assert.deepEqual(await ending, {
    kind: "refused",
    reason: "Manager refused this node: no task fits this node's modules",
    auth: false,
  });
  owner.close();
  listener.close();
});

Deno.test("NodePool.run: an owner that closes before answering Join, before any task, fails the node", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const owner = ownerEnd((await listener[Symbol.asyncIterator]().next()).value!);
  assert.equal((await owner.frame())?.kind, "join");
  owner.close();
  const end = await ending;
  assert.equal(end.kind, "failed");
  assert.match(end.kind === "failed" ? end.reason : "", /^Manager closed the connection before answering Join: /);
  listener.close();
});

Deno.test("NodePool.stop: a node waiting for its Join's answer ends, as when its owner's run is over", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const owner = ownerEnd((await listener[Symbol.asyncIterator]().next()).value!);
  assert.equal((await owner.frame())?.kind, "join");
  p.link.stop();
  p.pool.stop();
  assert.deepEqual(await ending, { kind: "finished", jobs: 0 });
  owner.close();
  listener.close();
});

Deno.test("NodePool.run --persist: a held task whose delivery the owner ends (Disconnect) is forgotten on disk too, not announced at every start", async () => {
  const listener = new MemoryListener();
  const stateDir = await Deno.makeTempDir();
  try {
    const state = await RunnerState.open(stateDir);
    const dir = join(stateDir, "work", "task-1");
    await Deno.mkdir(dir, { recursive: true });
    await state.keepTask({ key: "run=r key=k attempt=1", status: 0, rets: [], dir });
    const options: RunnerOptions = {
      hostname: "memory",
      port: 0,
      workers: 1,
      protocol: "binary",
      persist: true,
      backoff: { initialMs: 60_000, maxMs: 60_000 },
      connect: () => Promise.resolve(listener.connect()),
    };
    const link = new ManagerLink(options);
    const nodes = new NodePool(options, DEFAULT_LIMITS, link);
    const ending = nodes.run({ state });
    const transport = (await listener[Symbol.asyncIterator]().next()).value!;
    const lines = new BufferedReader(transport);
    assert.match((await lines.readLine())!, /^VICO\/1 hello proto=binary .*holds=1/);
    assert.equal(await lines.readLine(), "task run=r key=k attempt=1");
    await transport.write(new TextEncoder().encode("VICO/1 ok pulse=10 resume=1\n"));
    const owner = {
      frame: () => readFromNode(lines, DEFAULT_LIMITS),
      send: (m: ToNode) => transport.write(encodeToNode(m)),
    };
    assert.equal((await owner.frame())?.kind, "join");
    await owner.send({ kind: "accept" });
    await owner.send({ kind: "disconnect", reason: "this run is over" });
    // The session ends (failed) and the node waits to connect again: by then the record is gone.
    const deadline = Date.now() + 10_000;
    while ((await state.heldTasks()).length > 0) {
      assert.ok(Date.now() < deadline, "the held task's record is still there");
      await new Promise((r) => setTimeout(r, 20));
    }
    link.stop();
    nodes.stop();
    await ending;
    transport.close();
    state.close();
  } finally {
    listener.close();
    await Deno.remove(stateDir, { recursive: true });
  }
});
