/**
 * A manager's text sessions behind the real Server over an in-memory
 * listener, with the real scheduler, ledger, recorder and a durable results
 * store, for tests of the pipelined exchange (`pipe=1`). Identified runners'
 * holds are taken back as the manager takes them (issued to that runner,
 * still wanted).
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { parseJobList } from "../../manager/jobs/job_list.ts";
import { Server } from "../../manager/sessions/server.ts";
import { ManagerTextSession, type TextSessionContext } from "../../manager/sessions/text_session.ts";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { heldTag } from "../../protocol/vico_extension.ts";
import { MemoryListener } from "../../transport/memory_transport.ts";
import { managerParts } from "./manager_parts.ts";

const enc = new TextEncoder();

/** Options for {@linkcode pipeManager}. */
export interface PipeManagerOptions {
  /** Each commit of the results store waits for it (a slow disk). */
  commitGate?: Promise<void>;
  /** Pulse interval answered in the extension's `ok` (seconds; 0: none). */
  pulse?: number;
  /** The results store's commit window (ms; see `COMMIT_WINDOW_MS`). */
  commitWindowMs?: number;
  /** As under `--halt`: each result is judged before the runner's next job. */
  settleBeforeNext?: boolean;
}

/** The manager for `list` (results in `dir`, run `run1`, outputs up to 1,000 bytes). */
export async function pipeManager(dir: string, list: string, options: PipeManagerOptions = {}) {
  const jobs = parseJobList(enc.encode(list));
  const { keyOf, results, ledger, scheduler, recorder } = await managerParts(dir, jobs, {
    durable: true,
    ...(options.commitWindowMs === undefined ? {} : { commitWindowMs: options.commitWindowMs }),
  });
  const gate = options.commitGate;
  if (gate !== undefined) {
    const commit = results.commit.bind(results);
    results.commit = (...args) => gate.then(() => commit(...args));
  }
  const context: TextSessionContext = {
    scheduler,
    results,
    recorder,
    jobs,
    limits: { ...DEFAULT_LIMITS, maxOutputBytes: 1000 },
    transferIdleTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    jobTimeout: false,
    run: "run1",
    keyOf,
    noteAssignment: () => Promise.resolve(),
    ...(options.settleBeforeNext ? { settleBeforeNext: true } : {}),
  };
  const listener = new MemoryListener();
  const server = new Server(listener, {
    text: (transport, reader, handshake, extension) =>
      new ManagerTextSession(transport, reader, context, handshake, extension),
  }, {
    limits: DEFAULT_LIMITS,
    handshakeTimeoutMs: 10_000,
    maxHandshaking: 4,
    extensionAnswer: (hello, holds) => {
      const held = holds.map((line) => heldTag(line, "text")).filter((t) => t !== undefined)
        .map((t) => ({ job: ledger.jobOfKey(t.key)!, attempt: t.attempt }))
        .filter((h) => hello.id !== undefined && ledger.wants(hello.id, "run1", h.job, h.attempt));
      return {
        answer: {
          kind: "ok",
          ...(options.pulse ? { pulse: options.pulse } : {}),
          ...(hello.want.includes("tag") ? { tag: 1 } : {}),
          ...(hello.want.includes("tag") && hello.want.includes("pipe") ? { pipe: 1 } : {}),
        },
        held,
      };
    },
  });
  const serving = server.serve();
  /** A runner through the extension's hello and the draft's handshake: its end, reader, and the `ok` line. */
  const connect = async (want = "tag,pipe", id?: string, holds: string[] = []) => {
    const runner = listener.connect();
    const reader = new BufferedReader(runner);
    const say = (text: string | Uint8Array) => runner.write(typeof text === "string" ? enc.encode(text) : text);
    const who = id === undefined ? "" : ` id=${id}`;
    const held = holds.length === 0 ? "" : ` holds=${holds.length}\n${holds.join("\n")}`;
    await say(`VICO/1 hello proto=text${who} want=${want}${held}\n`);
    const ok = (await reader.readLine())!;
    await say("SALUTON; MI memory\n");
    assert.match((await reader.readLine())!, /^VERSIO 1\./);
    await say("KOMPRENAS\n");
    return { runner, reader, say, ok };
  };
  const close = async () => {
    await server.drain(1000);
    await serving;
    await results.close();
  };
  return { scheduler, keyOf, connect, close };
}
