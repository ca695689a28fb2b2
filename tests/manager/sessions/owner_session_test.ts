/**
 * The manager's owner session behind the real Server, over an in-memory
 * listener: no sockets, no node process. The scheduler, ledger, recorder
 * and results store are the real ones, wired as Manager.start wires them.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { parseJobList } from "../../../manager/jobs/job_list.ts";
import { Server } from "../../../manager/sessions/server.ts";
import { OwnerSession, type OwnerSessionContext } from "../../../manager/sessions/owner_session.ts";
import { ManagerTextSession } from "../../../manager/sessions/text_session.ts";
import { encodeFromNode, readToNode } from "../../../protocol/binary_codec.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { type FromNode, NodeStatus } from "../../../protocol/messages.ts";
import { MemoryListener } from "../../../transport/memory_transport.ts";
import { managerParts } from "../../helpers/manager_parts.ts";
import { tempDir } from "../../helpers/journal.ts";

const enc = new TextEncoder();

/** A server with real sessions over `list` (JSON lines), and a way to connect nodes to it. */
async function ownerServer(dir: string, list: string) {
  const jobs = parseJobList(enc.encode(list), { format: "jsonl", baseDir: dir });
  const { keyOf, results, scheduler, recorder } = await managerParts(dir, jobs, { durable: false });
  const context: OwnerSessionContext = {
    scheduler,
    results,
    recorder,
    jobs,
    limits: DEFAULT_LIMITS,
    transferIdleTimeoutMs: 10_000,
    run: "run1",
    keyOf,
    noteAssignment: () => Promise.resolve(),
    pulseMs: 0,
  };
  const listener = new MemoryListener();
  const server = new Server(listener, {
    text: (transport, reader, handshake, extension) =>
      new ManagerTextSession(
        transport,
        reader,
        { ...context, idleTimeoutMs: 10_000, jobTimeout: false },
        handshake,
        extension,
      ),
    binary: (transport, reader, handshake, extension) =>
      new OwnerSession(transport, reader, context, handshake, extension),
  }, { limits: DEFAULT_LIMITS, handshakeTimeoutMs: 10_000, maxHandshaking: 4 });
  const serving = server.serve();
  return {
    node() {
      const t = listener.connect();
      const reader = new BufferedReader(t);
      return {
        send: (msg: FromNode) => t.write(encodeFromNode(msg)),
        frame: () => readToNode(reader, DEFAULT_LIMITS),
        close: () => t.close(),
      };
    },
    async [Symbol.asyncDispose]() {
      await server.drain(0);
      await serving;
      await results.close();
    },
  };
}

Deno.test("OwnerSession over a memory transport rejects a Join in a binary version it does not speak", async () => {
  await using dir = await tempDir();
  await using server = await ownerServer(dir.path, '{"command": "true"}\n');
  const node = server.node();
  await node.send({ kind: "join", version: "2.0", modules: [] });
  const answer = await node.frame();
  assert.equal(answer?.kind, "reject");
  assert.match(answer?.kind === "reject" ? answer.reason : "", /unsupported version 2\.0/);
  node.close();
});

Deno.test("OwnerSession accepts a node's Join and stages a plain job as its script (File vico-job.sh)", async () => {
  await using dir = await tempDir();
  await using server = await ownerServer(dir.path, '{"command": "echo staged"}\n');
  const node = server.node();
  await node.send({ kind: "join", version: "1.0", modules: [] });
  assert.deepEqual(await node.frame(), { kind: "accept" });
  // An idle node may be probed with Status while the owner asks the scheduler.
  let frame = await node.frame();
  while (frame?.kind === "statusRequest") {
    await node.send({ kind: "status", value: NodeStatus.IDLE });
    frame = await node.frame();
  }
  assert.equal(frame?.kind, "file", JSON.stringify(frame));
  assert.equal(frame?.kind === "file" ? frame.name : "", "vico-job.sh");
  node.close();
});
