/**
 * The manager's text session behind the real Server, over an in-memory
 * listener: no sockets, no runner process. The scheduler, ledger, recorder
 * and results store are the real ones, wired as Manager.start wires them.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../../core/limits.ts";
import { parseJobList } from "../../../manager/jobs/job_list.ts";
import { Server } from "../../../manager/sessions/server.ts";
import { ManagerTextSession, type TextSessionContext } from "../../../manager/sessions/text_session.ts";
import { BufferedReader } from "../../../protocol/buffered_reader.ts";
import { MemoryListener } from "../../../transport/memory_transport.ts";
import { managerParts } from "../../helpers/manager_parts.ts";
import { readJournal, tempDir } from "../../helpers/journal.ts";

const enc = new TextEncoder();

Deno.test("ManagerTextSession over a memory transport: a plain runner takes the one job, reports it, and is told FINO", async () => {
  await using dir = await tempDir();
  const jobs = parseJobList(enc.encode("echo hi\n"));
  const { keyOf, results, scheduler, recorder } = await managerParts(dir.path, jobs, { durable: false });
  const context: TextSessionContext = {
    scheduler,
    results,
    recorder,
    jobs,
    limits: DEFAULT_LIMITS,
    transferIdleTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    jobTimeout: false,
    run: "run1",
    keyOf,
    noteAssignment: () => Promise.resolve(),
  };
  const listener = new MemoryListener();
  const server = new Server(listener, {
    text: (transport, reader, handshake, extension) =>
      new ManagerTextSession(transport, reader, context, handshake, extension),
  }, { limits: DEFAULT_LIMITS, handshakeTimeoutMs: 10_000, maxHandshaking: 4 });
  const serving = server.serve();

  const runner = listener.connect();
  const reader = new BufferedReader(runner);
  const say = (line: string) => runner.write(enc.encode(line + "\n"));
  await say("SALUTON; MI memory");
  assert.match((await reader.readLine())!, /^VERSIO 1\./);
  await say("KOMPRENAS");
  await say("PETO");
  assert.equal(await reader.readLine(), "echo hi");
  await say("REZULTO echo hi 0 3");
  assert.equal(await reader.readLine(), "PRETA");
  await runner.write(enc.encode("hi\n"));
  assert.equal(await reader.readLine(), "RICEVIS");
  await say("PETO");
  assert.equal(await reader.readLine(), "FINO");
  await say("FINO ANKAU");
  await scheduler.done;
  assert.equal(await reader.readLine(), null, "the manager closes after FINO ANKAU");
  await server.drain(1000);
  await serving;
  await results.close();
  const record = readJournal(dir.path).find((r) => r.type === "job");
  assert.equal(record?.type === "job" ? record.status : undefined, 0);
});
