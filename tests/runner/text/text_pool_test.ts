/**
 * The text pool (workers and connection loop) against a scripted manager
 * over in-memory transports: no sockets. Its jobs are real processes.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { ManagerLink } from "../../../runner/connect/manager_link.ts";
import type { RunnerOptions } from "../../../runner/runner_options.ts";
import { TextPool } from "../../../runner/text/text_pool.ts";
import { MemoryListener } from "../../../transport/memory_transport.ts";
import type { Transport } from "../../../transport/transport.ts";

const enc = new TextEncoder();

/** A manager's end of one connection: reads lines and bytes, writes lines. */
function managerEnd(transport: Transport) {
  const reader = new BufferedReader(transport);
  return {
    line: () => reader.readLine(),
    bytes: (n: number) => reader.readExact(n),
    say: (line: string) => transport.write(enc.encode(line + "\n")),
    close: () => transport.close(),
  };
}

/** A pool whose link dials `listener`, with a fresh spool directory. */
async function pool(listener: MemoryListener, options: Partial<RunnerOptions> = {}) {
  const spoolDir = await Deno.makeTempDir();
  const all: RunnerOptions = {
    hostname: "memory",
    port: 0,
    workers: 1,
    name: "memory",
    extension: false,
    spoolDir,
    connect: () => Promise.resolve(listener.connect()),
    ...options,
  };
  const link = new ManagerLink(all);
  return {
    link,
    pool: new TextPool(all, DEFAULT_LIMITS, link),
    [Symbol.asyncDispose]: () => Deno.remove(spoolDir, { recursive: true }),
  };
}

Deno.test("TextPool.run: runs a job, reports it with its output, and finishes on FINO", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  assert.equal(await manager.line(), "SALUTON; MI memory");
  await manager.say("VERSIO 1.0");
  assert.equal(await manager.line(), "KOMPRENAS");
  assert.equal(await manager.line(), "PETO");
  await manager.say("echo hi");
  assert.equal(await manager.line(), "REZULTO echo hi 0 3");
  await manager.say("PRETA");
  assert.equal(new TextDecoder().decode(await manager.bytes(3)), "hi\n");
  await manager.say("RICEVIS");
  assert.equal(await manager.line(), "PETO");
  await manager.say("FINO");
  assert.equal(await manager.line(), "FINO ANKAU");
  manager.close();
  assert.deepEqual(await ending, { kind: "finished", jobs: 1 });
  assert.equal(p.pool.done, 1);
  assert.equal(p.link.connected, false);
  assert.equal(p.link.problem, "it has no more jobs");
  listener.close();
});

Deno.test("TextPool.run: without --persist, a manager lost before a result ends the pool as failed", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  await manager.line();
  await manager.say("VERSIO 1.0");
  await manager.line();
  assert.equal(await manager.line(), "PETO");
  await manager.say("echo hi");
  manager.close();
  const end = await ending;
  assert.equal(end.kind, "failed");
  assert.equal(end.kind === "failed" ? end.jobs : -1, 0);
  assert.equal(p.pool.done, 0);
  listener.close();
});

Deno.test("TextPool.run: without --persist, a manager that closes during the opening ends the pool as failed", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const accepted = listener[Symbol.asyncIterator]();
  managerEnd((await accepted.next()).value!).close();
  const end = await ending;
  assert.equal(end.kind, "failed");
  listener.close();
});

Deno.test("TextPool.run: a manager speaking another version refuses the runner (not for authentication)", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  await manager.line();
  await manager.say("VERSIO 2.0");
  const end = await ending;
  assert.equal(end.kind, "refused");
  assert.equal(end.kind === "refused" && end.auth, false);
  manager.close();
  listener.close();
});

Deno.test("TextPool.abort: ends a pool waiting for a job as stopped", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener);
  const ending = p.pool.run({});
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  await manager.line();
  await manager.say("VERSIO 1.0");
  assert.equal(await manager.line(), "KOMPRENAS");
  assert.equal(await manager.line(), "PETO");
  p.link.stop();
  p.pool.abort("test");
  assert.deepEqual(await ending, { kind: "stopped", jobs: 0 });
  manager.close();
  listener.close();
});
