/**
 * The runner's text client against a scripted manager over an in-memory
 * transport pair: no sockets, no processes.
 */

import assert from "node:assert/strict";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { RunnerTextClient } from "../../../runner/text/text_client.ts";
import { memoryTransportPair } from "../../../transport/memory_transport.ts";

const enc = new TextEncoder();

/** The manager's end: reads lines and raw bytes, writes lines. */
function scriptedManager() {
  const [runnerEnd, managerEnd] = memoryTransportPair({ a: "runner", b: "manager" });
  const reader = new BufferedReader(managerEnd);
  return {
    runnerEnd,
    line: () => reader.readLine(),
    bytes: (n: number) => reader.readExact(n),
    say: (line: string) => managerEnd.write(enc.encode(line + "\n")),
    close: () => managerEnd.close(),
  };
}

Deno.test({
  name: "RunnerTextClient over a memory transport: hail, KOMPRENAS, PETO, REZULTO and its output, FINO ANKAU",
  permissions: "none",
  async fn() {
    const manager = scriptedManager();
    const client = new RunnerTextClient(manager.runnerEnd, new BufferedReader(manager.runnerEnd), {
      name: "memory",
      workers: 1,
    });
    const opening = client.open();
    assert.equal(await manager.line(), "SALUTON; MI memory");
    await manager.say("VERSIO 1.1");
    assert.equal((await opening).kind, "open");
    assert.equal(await manager.line(), "KOMPRENAS");

    const asking = client.request();
    assert.equal(await manager.line(), "PETO");
    await manager.say("echo hi");
    assert.deepEqual(await asking, { command: "echo hi" });

    const output = enc.encode("hi\n");
    const reporting = client.report({ command: "echo hi" }, 0, {
      size: output.length,
      pipeTo: (sink) => sink(output),
    });
    assert.equal(await manager.line(), "REZULTO echo hi 0 3");
    await manager.say("PRETA");
    assert.deepEqual(await manager.bytes(3), output);
    await manager.say("RICEVIS");
    await reporting;

    const last = client.request();
    assert.equal(await manager.line(), "PETO");
    await manager.say("FINO");
    assert.equal(await last, null);
    const ending = client.arriveWaitClose();
    assert.equal(await manager.line(), "FINO ANKAU");
    assert.deepEqual(await ending, { kind: "goodbye" });
    manager.close();
    await client.finished();
  },
});

Deno.test({
  name: "RunnerTextClient.open() refuses a manager that speaks another protocol version",
  permissions: "none",
  async fn() {
    const manager = scriptedManager();
    const client = new RunnerTextClient(manager.runnerEnd, new BufferedReader(manager.runnerEnd), {
      name: "memory",
      workers: 1,
    });
    const opening = client.open();
    assert.equal(await manager.line(), "SALUTON; MI memory");
    await manager.say("VERSIO 2.0");
    const opened = await opening;
    assert.equal(opened.kind, "refused");
    manager.close();
    await client.finished();
  },
});

Deno.test({
  name:
    "RunnerTextClient.sendResult() with ask: the result, its bytes and the next PETO go back to back; its answer is next",
  permissions: "none",
  async fn() {
    const manager = scriptedManager();
    const client = new RunnerTextClient(manager.runnerEnd, new BufferedReader(manager.runnerEnd), {
      name: "memory",
      workers: 1,
      extension: { pulseSec: 0, tagged: true, pipe: true },
    });
    const opening = client.open();
    assert.equal(await manager.line(), "SALUTON; MI memory");
    await manager.say("VERSIO 1.1");
    assert.equal((await opening).kind, "open");
    assert.equal(await manager.line(), "KOMPRENAS");

    const asking = client.request();
    assert.equal(await manager.line(), "PETO");
    await manager.say("VICO/1 job run=r1 key=k1 attempt=1");
    await manager.say("echo hi");
    const job = await asking;
    assert.deepEqual(job, { command: "echo hi", tag: "run=r1 key=k1 attempt=1" });

    const output = enc.encode("hi\n");
    const { acked, next } = await client.sendResult(job!, 0, { size: 3, pipeTo: (sink) => sink(output) }, false, true);
    assert.equal(await manager.line(), "VICO/1 result run=r1 key=k1 attempt=1");
    assert.equal(await manager.line(), "REZULTO echo hi 0 3");
    assert.deepEqual(await manager.bytes(3), output);
    assert.equal(await manager.line(), "PETO");
    await manager.say("VICO/1 ack run=r1 key=k1 attempt=1");
    await acked;
    await manager.say("FINO");
    assert.equal(await next, null);
    const ending = client.arriveWaitClose();
    assert.equal(await manager.line(), "FINO ANKAU");
    assert.deepEqual(await ending, { kind: "goodbye" });
    manager.close();
    await client.finished();
  },
});

Deno.test({
  name:
    "RunnerTextClient.report: an output that fails mid-stream ends the connection, so no later line is read as its bytes",
  permissions: "none",
  async fn() {
    // A kept result whose file cannot be read whole (a state directory
    // removed or damaged under the runner). Before, the lock was released
    // with the REZULTO half sent: the next worker's PETO went out on the same
    // connection, and the manager read it as the rest of the job's output.
    const manager = scriptedManager();
    const client = new RunnerTextClient(manager.runnerEnd, new BufferedReader(manager.runnerEnd), {
      name: "memory",
      workers: 2,
    });
    const opening = client.open();
    await manager.line();
    await manager.say("VERSIO 1.1");
    assert.equal((await opening).kind, "open");
    assert.equal(await manager.line(), "KOMPRENAS");
    const reporting = client.report({ command: "cat kept" }, 0, {
      size: 10,
      pipeTo: async (sink) => {
        await sink(enc.encode("half\n"));
        throw new Error("Is a directory (os error 21)");
      },
    });
    assert.equal(await manager.line(), "REZULTO cat kept 0 10");
    await manager.say("PRETA");
    await assert.rejects(reporting, /Is a directory/);
    assert.equal(client.closed, true, "the connection is given up");
    const end = await client.ended;
    assert.equal(end.kind, "failed");
    assert.match(end.kind === "failed" ? end.reason : "", /Is a directory/);
    await assert.rejects(client.request());
    assert.deepEqual(await manager.bytes(5), enc.encode("half\n"));
    assert.equal(await manager.line(), null, "nothing after the half output: the connection is closed");
  },
});
