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
import { RunnerState } from "../../../runner/service/runner_state.ts";
import { MemoryListener } from "../../../transport/memory_transport.ts";
import { canMountTinyDisk, fill, tinyDisk } from "../../helpers/tiny_disk.ts";
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

/** Opens a pipelined (`pipe=1`) connection on the manager's end: the hello, the hail, KOMPRENAS. */
async function pipelined(listener: MemoryListener) {
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  assert.match((await manager.line())!, /^VICO\/1 hello proto=text .*want=.*pipe/);
  await manager.say("VICO/1 ok tag=1 pipe=1");
  assert.equal(await manager.line(), "SALUTON; MI memory");
  await manager.say("VERSIO 1.0");
  assert.equal(await manager.line(), "KOMPRENAS");
  return manager;
}

const tagOf = (n: number) => `run=r1 key=k${n} attempt=1`;

type ManagerEnd = Awaited<ReturnType<typeof pipelined>>;

/** Reads job `n`'s result lines (status 0, no output). */
async function expectResult(manager: ManagerEnd, n: number, command: string): Promise<void> {
  assert.equal(await manager.line(), `VICO/1 result ${tagOf(n)}`);
  assert.equal(await manager.line(), `REZULTO ${command} 0 0`);
}

/**
 * Job 1 (`true`: nothing known of its length, so no PETO ahead; its result
 * takes the next PETO along), then job 2 (`sleep 0.3`): after a short job
 * the worker asks for job 3 as job 2 starts, and job 3 is sent.
 */
async function oneAhead(manager: ManagerEnd): Promise<void> {
  assert.equal(await manager.line(), "PETO");
  await manager.say(`VICO/1 job ${tagOf(1)} seq=1\ntrue`);
  await expectResult(manager, 1, "true");
  assert.equal(await manager.line(), "PETO");
  await manager.say(`VICO/1 ack ${tagOf(1)}`);
  await manager.say(`VICO/1 job ${tagOf(2)} seq=2\nsleep 0.3`);
  assert.equal(await manager.line(), "PETO", "asked one ahead, while job 2 runs");
  await manager.say(`VICO/1 job ${tagOf(3)} seq=3\ntrue`);
}

Deno.test("TextPool.run pipelined: a worker whose last job was short asks for its next job as it starts one; after a long one, once it ends", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener, { extension: true });
  const ending = p.pool.run({});
  const manager = await pipelined(listener);
  await oneAhead(manager);
  await expectResult(manager, 2, "sleep 0.3");
  await manager.say(`VICO/1 ack ${tagOf(2)}`);
  // Job 3 was there already; after the long job 2 it asks only once job 3 has ended, with its result.
  await expectResult(manager, 3, "true");
  assert.equal(await manager.line(), "PETO");
  await manager.say(`VICO/1 ack ${tagOf(3)}`);
  await manager.say("FINO");
  assert.equal(await manager.line(), "FINO ANKAU");
  manager.close();
  assert.deepEqual(await ending, { kind: "finished", jobs: 3 });
  listener.close();
});

Deno.test("TextPool.stop pipelined: a job asked for ahead and not started goes back (VICO/1 back), the running one is reported", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener, { extension: true });
  const ending = p.pool.run({});
  const manager = await pipelined(listener);
  await oneAhead(manager);
  p.pool.stop();
  assert.equal(await manager.line(), "VICO/1 leave");
  const rest: string[] = [];
  for (let i = 0; i < 3; i++) rest.push((await manager.line())!);
  assert.deepEqual(
    rest.sort(),
    [`VICO/1 back ${tagOf(3)}`, "REZULTO sleep 0.3 0 0", `VICO/1 result ${tagOf(2)}`].sort(),
  );
  await manager.say(`VICO/1 ack ${tagOf(2)}`);
  assert.equal(await manager.line(), "FINO ANKAU");
  manager.close();
  const end = await ending;
  assert.equal(end.kind, "stopped");
  listener.close();
});

Deno.test("TextPool.run pipelined: on short jobs each result takes along the PETO two jobs ahead (one write a job), and every PETO out is answered before FINO ANKAU", async () => {
  const listener = new MemoryListener();
  await using p = await pool(listener, { extension: true });
  const ending = p.pool.run({});
  const manager = await pipelined(listener);
  const result = (n: number) => expectResult(manager, n, "true");
  assert.equal(await manager.line(), "PETO");
  await manager.say(`VICO/1 job ${tagOf(1)} seq=1\ntrue`);
  await result(1);
  assert.equal(await manager.line(), "PETO", "the first result asks for the next job");
  await manager.say(`VICO/1 job ${tagOf(2)} seq=2\ntrue`);
  assert.equal(await manager.line(), "PETO", "after a short job: one ahead, as job 2 starts");
  await manager.say(`VICO/1 job ${tagOf(3)} seq=3\ntrue`);
  await result(2);
  assert.equal(await manager.line(), "PETO", "job 2's result asks for job 4 (job 3 is there already)");
  // Job 3 starts with job 4's PETO out: no PETO of its own; its result takes job 5's along.
  await result(3);
  assert.equal(await manager.line(), "PETO");
  for (const n of [1, 2, 3]) await manager.say(`VICO/1 ack ${tagOf(n)}`);
  await manager.say("FINO\nFINO");
  assert.equal(await manager.line(), "FINO ANKAU");
  manager.close();
  assert.deepEqual(await ending, { kind: "finished", jobs: 3 });
  listener.close();
});

Deno.test("TextPool.run --persist: a job that ends while kept results are being delivered is reported on that connection, not kept for the next", async () => {
  const listener = new MemoryListener();
  const stateDir = await Deno.makeTempDir();
  using state = await RunnerState.open(stateDir);
  await using p = await pool(listener, { extension: true, backoff: { initialMs: 10, maxMs: 20 } });
  const ending = p.pool.run({ state });
  const accepted = listener[Symbol.asyncIterator]();
  // Connection 1 hands job 1 and is lost: the job runs on.
  const first = managerEnd((await accepted.next()).value!);
  await first.line(); // hello
  await first.say("VICO/1 ok tag=1 pipe=1");
  await first.line(); // SALUTON
  await first.say("VERSIO 1.0");
  await first.line(); // KOMPRENAS
  assert.equal(await first.line(), "PETO");
  await first.say(`VICO/1 job ${tagOf(1)} seq=1\nsleep 0.5`);
  await new Promise((r) => setTimeout(r, 100)); // job 1 is running
  // A result an earlier connection left to the state directory: kept before this connection is lost, so the
  // reconnection (10-20 ms later) cannot say hello before it is on disk.
  await state.store({ command: "echo kept", tag: tagOf(9) }, 0, {
    size: 5,
    pipeTo: (sink) => sink(enc.encode("kept\n")),
  });
  first.close();
  const second = managerEnd((await accepted.next()).value!);
  assert.match((await second.line())!, /holds=2/);
  assert.equal(await second.line(), `${tagOf(1)} sleep 0.5`);
  assert.equal(await second.line(), `${tagOf(9)} echo kept`);
  await second.say("VICO/1 ok tag=1 pipe=1");
  await second.line(); // SALUTON
  await second.say("VERSIO 1.0");
  await second.line(); // KOMPRENAS
  assert.equal(await second.line(), `VICO/1 result ${tagOf(9)}`);
  assert.equal(await second.line(), "REZULTO echo kept 0 5");
  assert.equal(new TextDecoder().decode(await second.bytes(5)), "kept\n");
  await new Promise((r) => setTimeout(r, 800)); // job 1 ends before the kept result's ack
  await second.say(`VICO/1 ack ${tagOf(9)}`);
  // What comes within 2 s: job 1's result, and a PETO.
  const lines: string[] = [];
  const timeUp = new Promise<null>((r) => setTimeout(() => r(null), 2000));
  for (let i = 0; i < 3; i++) {
    const line = await Promise.race([second.line(), timeUp]);
    if (line === null) break;
    lines.push(line);
  }
  assert.ok(lines.includes(`VICO/1 result ${tagOf(1)}`), `job 1 reported on this connection: ${lines.join(" | ")}`);
  assert.ok(lines.includes("REZULTO sleep 0.5 0 0"), lines.join(" | "));
  await second.say(`VICO/1 ack ${tagOf(1)}`);
  await second.say("FINO");
  assert.equal(await second.line(), "FINO ANKAU");
  second.close();
  p.link.stop();
  p.pool.abort("test");
  await ending;
  assert.deepEqual(await state.pending(), [], "nothing left kept");
  listener.close();
  await Deno.remove(stateDir, { recursive: true });
});

Deno.test("TextPool.run --persist: a manager that goes silent mid-delivery of a kept result is left after four pulses, saying so; the result stays kept", async () => {
  const listener = new MemoryListener();
  const stateDir = await Deno.makeTempDir();
  using state = await RunnerState.open(stateDir);
  await state.store({ command: "echo kept", tag: tagOf(9) }, 0, {
    size: 5,
    pipeTo: (sink) => sink(enc.encode("kept\n")),
  });
  await using p = await pool(listener, { extension: true, backoff: { initialMs: 10, maxMs: 20 } });
  const ending = p.pool.run({ state });
  const accepted = listener[Symbol.asyncIterator]();
  const silent = managerEnd((await accepted.next()).value!);
  assert.match((await silent.line())!, /holds=1/);
  await silent.line();
  await silent.say("VICO/1 ok pulse=1 tag=1 pipe=1");
  await silent.line(); // SALUTON
  await silent.say("VERSIO 1.0");
  await silent.line(); // KOMPRENAS
  assert.equal(await silent.line(), `VICO/1 result ${tagOf(9)}`);
  assert.equal(await silent.line(), "REZULTO echo kept 0 5");
  const started = performance.now();
  // No ack, no pulse: the runner's next connection comes once it gives up on this one.
  const next = managerEnd((await accepted.next()).value!);
  const waited = performance.now() - started;
  assert.ok(waited >= 3500 && waited < 8000, `left after ${Math.round(waited)} ms`);
  assert.match(p.link.problem ?? "", /Manager silent for 4s/);
  const [kept] = await state.pending();
  assert.equal(kept?.failures, 1, "one dropped delivery counted");
  p.link.stop();
  p.pool.abort("test");
  next.close();
  silent.close();
  await ending;
  listener.close();
  await Deno.remove(stateDir, { recursive: true });
});

/** `promise`, or a rejection naming `what` after `ms`: a runner that hangs fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeUp]).finally(() => clearTimeout(timer));
}

/** The manager's side of a pipelined hello: reads it and its held lines, answers `answer`, then the hail. */
async function helloThen(manager: ManagerEnd, answer: string): Promise<string[]> {
  const hello = (await within(manager.line(), 5000, "the hello"))!;
  assert.match(hello, /^VICO\/1 hello proto=text /);
  const holds = Number(/holds=(\d+)/.exec(hello)?.[1] ?? 0);
  const held: string[] = [];
  for (let i = 0; i < holds; i++) held.push((await manager.line())!);
  await manager.say(answer);
  assert.equal(await within(manager.line(), 5000, "the hail"), "SALUTON; MI memory");
  await manager.say("VERSIO 1.0");
  assert.equal(await manager.line(), "KOMPRENAS");
  return held;
}

/** Runs `echo hi` as job `n` on a pipelined connection, then says FINO: the pool is still serving. */
async function oneJobThenFino(manager: ManagerEnd, n: number): Promise<void> {
  assert.equal(await within(manager.line(), 5000, "a PETO"), "PETO");
  await manager.say(`VICO/1 job ${tagOf(n)} seq=${n}\necho hi`);
  assert.equal(await within(manager.line(), 5000, "the result"), `VICO/1 result ${tagOf(n)}`);
  assert.equal(await manager.line(), "REZULTO echo hi 0 3");
  assert.equal(new TextDecoder().decode(await manager.bytes(3)), "hi\n");
  await manager.say(`VICO/1 ack ${tagOf(n)}`);
  assert.equal(await within(manager.line(), 5000, "the next PETO"), "PETO");
  await manager.say("FINO");
  assert.equal(await within(manager.line(), 5000, "FINO ANKAU"), "FINO ANKAU");
}

const mountable = canMountTinyDisk();

Deno.test({
  name:
    "TextPool.run --persist: a kept result the manager drops, on a full state disk, stays kept; the connection goes on and runs jobs",
  ignore: !mountable,
  async fn() {
    // Before, setAside's ENOSPC rejected the whole pool from inside the
    // opening (TextPool.run, which "never rejects", rejected).
    using disk = tinyDisk()!;
    const listener = new MemoryListener();
    using state = await RunnerState.open(`${disk.path}/state`);
    await state.store({ command: "echo kept", tag: tagOf(9) }, 0, {
      size: 5,
      pipeTo: (sink) => sink(enc.encode("kept\n")),
    });
    fill(`${disk.path}/filler`);
    await using p = await pool(listener, { extension: true, backoff: { initialMs: 10, maxMs: 20 } });
    const ending = p.pool.run({ state });
    ending.catch(() => {});
    const accepted = listener[Symbol.asyncIterator]();
    const manager = managerEnd((await accepted.next()).value!);
    assert.deepEqual(await helloThen(manager, "VICO/1 ok tag=1 pipe=1 drop=0"), [`${tagOf(9)} echo kept`]);
    await oneJobThenFino(manager, 1);
    manager.close();
    p.link.stop();
    p.pool.abort("test");
    assert.equal((await within(ending, 5000, "the pool's end")).kind, "stopped");
    assert.deepEqual((await state.pending()).map((r) => r.command), ["echo kept"], "still kept, not half set aside");
    listener.close();
  },
});

Deno.test("TextPool.run --persist: a state directory whose pending/ is gone: the connection opens without kept results and runs jobs", async () => {
  // Before, reading the kept results threw from inside the opening: no hello
  // was ever sent, and TextPool.run (which "never rejects") rejected.
  const listener = new MemoryListener();
  const stateDir = await Deno.makeTempDir();
  using state = await RunnerState.open(stateDir);
  await Deno.remove(`${stateDir}/pending`, { recursive: true });
  await using p = await pool(listener, { extension: true, backoff: { initialMs: 10, maxMs: 20 } });
  const ending = p.pool.run({ state });
  ending.catch(() => {});
  const accepted = listener[Symbol.asyncIterator]();
  const manager = managerEnd((await accepted.next()).value!);
  assert.deepEqual(await helloThen(manager, "VICO/1 ok tag=1 pipe=1"), []);
  await oneJobThenFino(manager, 1);
  manager.close();
  p.link.stop();
  p.pool.abort("test");
  assert.equal((await within(ending, 5000, "the pool's end")).kind, "stopped");
  listener.close();
  await Deno.remove(stateDir, { recursive: true });
});

Deno.test("TextPool.run --persist: a running job the manager does not want, whose result cannot be set aside, is logged and the pool goes on", async () => {
  // Before, setAside's rejection escaped the worker (an unhandled rejection: the runner process died).
  const listener = new MemoryListener();
  const stateDir = await Deno.makeTempDir();
  using state = await RunnerState.open(stateDir);
  await using p = await pool(listener, { extension: true, backoff: { initialMs: 10, maxMs: 20 } });
  const ending = p.pool.run({ state });
  ending.catch(() => {});
  const accepted = listener[Symbol.asyncIterator]();
  const first = managerEnd((await accepted.next()).value!);
  await helloThen(first, "VICO/1 ok tag=1 pipe=1");
  assert.equal(await first.line(), "PETO");
  await first.say(`VICO/1 job ${tagOf(1)} seq=1\nsleep 0.5`);
  await new Promise((r) => setTimeout(r, 100)); // job 1 is running
  first.close();
  // set-aside/ is no directory now: setting a result aside fails (ENOTDIR / EEXIST).
  await Deno.remove(`${stateDir}/set-aside`, { recursive: true });
  await Deno.writeTextFile(`${stateDir}/set-aside`, "");
  const second = managerEnd((await accepted.next()).value!);
  // Another run's manager: it does not want job 1.
  assert.deepEqual(await helloThen(second, "VICO/1 ok tag=1 pipe=1 drop=0"), [`${tagOf(1)} sleep 0.5`]);
  await new Promise((r) => setTimeout(r, 800)); // job 1 ends, and is not wanted
  await oneJobThenFino(second, 2);
  second.close();
  p.link.stop();
  p.pool.abort("test");
  assert.equal((await within(ending, 5000, "the pool's end")).kind, "stopped");
  assert.deepEqual((await state.pending()).map((r) => r.command), ["sleep 0.5"], "kept, for the next manager to drop");
  listener.close();
  await Deno.remove(stateDir, { recursive: true });
});
