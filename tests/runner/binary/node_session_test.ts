/**
 * The runner's node session against a scripted owner over an in-memory
 * transport pair: no sockets. (tests/e2e/node_session_test.ts drives a real
 * runner process.)
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { encodeToNode, readFromNode } from "../../../protocol/binary_codec.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { NO_MORE_TASKS, NodeStatus, type ToNode } from "../../../protocol/messages.ts";
import { NodeSession } from "../../../runner/binary/node_session.ts";
import { memoryTransportPair } from "../../../transport/memory_transport.ts";

/** The owner's end: reads the node's frames, sends its own. */
function scriptedOwner() {
  const [nodeEnd, ownerEnd] = memoryTransportPair({ a: "node", b: "owner" });
  const reader = new BufferedReader(ownerEnd);
  return {
    nodeEnd,
    frame: () => readFromNode(reader, DEFAULT_LIMITS),
    send: (msg: ToNode) => ownerEnd.write(encodeToNode(msg)),
    close: () => ownerEnd.close(),
  };
}

Deno.test("NodeSession over a memory transport: Join with its modules, Status answered, ends on the owner's no more tasks", async () => {
  const workDir = await Deno.makeTempDir();
  try {
    const owner = scriptedOwner();
    const session = new NodeSession(owner.nodeEnd, new BufferedReader(owner.nodeEnd), {
      modules: ["blast", "py3"],
      workDir,
      limits: DEFAULT_LIMITS,
      run: () => Promise.reject(new Error("nothing runs in this test")),
    });
    const running = session.run();
    const join = await owner.frame();
    assert.equal(join?.kind, "join");
    assert.deepEqual(join?.kind === "join" ? join.modules : [], ["blast", "py3"]);
    await owner.send({ kind: "accept" });
    await owner.send({ kind: "statusRequest" });
    assert.deepEqual(await owner.frame(), { kind: "status", value: NodeStatus.IDLE });
    await owner.send({ kind: "disconnect", reason: NO_MORE_TASKS });
    assert.deepEqual(await running, { kind: "noMoreTasks" });
    owner.close();
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});

Deno.test("NodeSession ends refused when the owner rejects its Join", async () => {
  const workDir = await Deno.makeTempDir();
  try {
    const owner = scriptedOwner();
    const session = new NodeSession(owner.nodeEnd, new BufferedReader(owner.nodeEnd), {
      modules: [],
      workDir,
      limits: DEFAULT_LIMITS,
    });
    const running = session.run();
    assert.equal((await owner.frame())?.kind, "join");
    await owner.send({ kind: "reject", reason: "no task fits this node's modules" });
    assert.deepEqual(await running, { kind: "refused", reason: "no task fits this node's modules" });
    owner.close();
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});
