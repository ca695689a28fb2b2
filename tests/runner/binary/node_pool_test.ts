/**
 * The node pool (node loops and held tasks) against a scripted owner over
 * in-memory transports: no sockets.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { encodeToNode, readFromNode } from "../../../protocol/binary_codec.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { NO_MORE_TASKS, type ToNode } from "../../../protocol/messages.ts";
import { NodePool } from "../../../runner/binary/node_pool.ts";
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
