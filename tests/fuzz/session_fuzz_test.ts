/**
 * Fuzzing the session state machines with mutated recordings of valid
 * sessions (tests/fuzz/corpus/), over real loopback sockets:
 *
 * - the manager's text and owner sessions (mutated runner and node
 *   sessions): it never crashes, keeps serving, and once an honest runner
 *   has drained the list every job is recorded exactly once;
 * - the runner's node session (mutated owner sessions): it always ends,
 *   never writes outside its work directory;
 * - the runner's text client (mutated manager sessions): it always ends.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { ConnTransport } from "../../transport/conn_transport.ts";
import { parseJobList } from "../../manager/jobs/job_list.ts";
import { Manager } from "../../manager/manager.ts";
import { NodeSession } from "../../runner/binary/node_session.ts";
import { Runner } from "../../runner/runner.ts";
import { type HandedJob, RunnerTextClient } from "../../runner/text/text_client.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";
import { chunked, corpus, mutatedSession, params, RUNS } from "./fuzz_support.ts";

/** Sends `bytes` in chunks, then reads until the peer closes or goes quiet. */
async function play(conn: Deno.TcpConn, bytes: Uint8Array, sizes: number[], quietMs = 80): Promise<void> {
  const sink = (async () => {
    const buf = new Uint8Array(4096);
    while (true) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<null>((r) => (timer = setTimeout(() => r(null), quietMs))),
      ]);
      clearTimeout(timer);
      if (n === null) return;
    }
  })();
  try {
    for (const part of chunked(bytes, sizes)) await conn.write(part);
  } catch {
    // The peer closed: fine.
  }
  await sink;
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

Deno.test({
  name: "fuzz: the manager survives mutated runner and node sessions and still records every job exactly once",
  async fn() {
    await using dir = await tempDir();
    // Mutants settle some jobs themselves: a replayed binary session completes
    // whatever task it is handed (the protocol names none), and a vico
    // runner's result for any unsettled job counts. The list is longer than
    // the runs, so the manager keeps serving until the honest runner.
    const n = 2 * Math.max(RUNS, 60) + 20;
    const jobs = parseJobList(new TextEncoder().encode(
      Array.from({ length: n }, (_, i) => i < 2 ? `echo fuzz-${i}` : `echo honest-job-${i}`).join("\n"),
    ));
    const resultsDir = join(dir.path, "res");
    const manager = await Manager.start({
      jobs,
      resultsDir,
      port: 0,
      durable: false,
      handshakeTimeoutMs: 300,
      transferIdleTimeoutMs: 300,
      drainTimeoutMs: 200,
      maxAttempts: 1000,
      leaseMs: 0,
      quarantine: { streak: 0 },
    });
    const { port } = manager.address;
    await fc.assert(
      fc.asyncProperty(
        mutatedSession(corpus("manager")),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }),
        async ({ bytes }, sizes) => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          await play(conn, bytes, sizes);
          // Still serving: a new connection is accepted.
          const probe = await Deno.connect({ hostname: "127.0.0.1", port });
          probe.close();
        },
      ),
      params(),
    );
    const honest = await new Runner({ hostname: "127.0.0.1", port, workers: 4, name: "honest" }).run();
    const summary = await manager.finished;
    assert.notEqual(honest.kind, "failed", JSON.stringify(honest));
    assert.equal(summary.unsettled, 0);
    const records = readRecords(resultsDir);
    assert.equal(records.length, n, "every job recorded");
    assert.equal(new Set(records.map((r) => r.key)).size, n, "and only once");
  },
});

Deno.test({
  name: "fuzz: the node session ends on any mutated owner session and writes nothing outside its work directory",
  async fn() {
    await using dir = await tempDir();
    const work = join(dir.path, "work");
    const outside = join(dir.path, "outside");
    await Deno.mkdir(work);
    await Deno.mkdir(outside);
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await fc.assert(
      fc.asyncProperty(
        mutatedSession(corpus("node")),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }),
        async ({ bytes }, sizes) => {
          const accepted = listener.accept();
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
          const transport = new ConnTransport(conn);
          const session = new NodeSession(transport, new BufferedReader(transport), {
            modules: [],
            workDir: work,
            limits: { ...DEFAULT_LIMITS, maxFileBytes: 1 << 16, maxStringBytes: 1024 },
            killGraceMs: 50,
            // No process is ever started from a mutated script.
            run: async (_argv, options) => {
              await options.sink!(new TextEncoder().encode("stand-in run\n"));
              return { status: 0 };
            },
          });
          const owner = await accepted;
          const [end] = await Promise.all([session.run(), play(owner, bytes, sizes)]);
          assert.ok(["done", "noMoreTasks", "refused", "failed", "ownerGone"].includes(end.kind));
          assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside");
        },
      ),
      params(),
    );
    assert.deepEqual([...Deno.readDirSync(work)], [], "every task directory removed");
  },
});

Deno.test({
  name: "fuzz: the runner's text client ends on any mutated manager session",
  async fn() {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await fc.assert(
      fc.asyncProperty(
        mutatedSession(corpus("runner")),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }),
        async ({ bytes }, sizes) => {
          const accepted = listener.accept();
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
          const transport = new ConnTransport(conn);
          const client = new RunnerTextClient(transport, new BufferedReader(transport), { name: "fuzz", workers: 1 });
          const manager = await accepted;
          const worker = (async () => {
            const opened = await client.open();
            if (opened.kind !== "open") return;
            while (!client.closed) {
              let job: HandedJob | null;
              try {
                job = await client.request();
              } catch {
                break;
              }
              if (job === null) break;
              const output = {
                size: 3,
                pipeTo: (sink: (c: Uint8Array) => Promise<void>) => sink(Uint8Array.of(1, 2, 3)),
              };
              await client.report(job, 0, output).catch(() => {});
            }
            await client.arriveWaitClose();
          })();
          await Promise.all([worker, play(manager, bytes, sizes)]);
          client.abort("fuzz run over");
          await client.finished();
        },
      ),
      params(),
    );
  },
});
