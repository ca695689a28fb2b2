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
import { NodeSession, type NodeSessionOptions } from "../../../runner/binary/node_session.ts";
import { runProcess, STATUS_RUNNER_FAILURE } from "../../../runner/exec/process_runner.ts";
import { outputLimitNote } from "../../../runner/exec/output_limit.ts";
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

/** Drives one task through a node session: stages the programs, runs them, returns the Finished status and the logs. */
async function oneTask(
  options: Omit<NodeSessionOptions, "modules" | "limits"> & { limits?: NodeSessionOptions["limits"] },
  task: {
    key?: string;
    programs: Record<string, string>;
    runs: { program: string; log: string }[];
    rets: string[];
  },
): Promise<{ status: number; results: (string | null)[] }> {
  const [nodeEnd, ownerEnd] = memoryTransportPair({ a: "node", b: "owner" });
  const reader = new BufferedReader(ownerEnd);
  const frame = (startReply = false) => readFromNode(reader, DEFAULT_LIMITS, startReply);
  const send = (msg: ToNode, payload?: string) =>
    ownerEnd.write(
      payload === undefined ? encodeToNode(msg) : concat(encodeToNode(msg), new TextEncoder().encode(payload)),
    );
  const accepted = async (what: string) => assert.deepEqual(await frame(), { kind: "accept" }, what);
  const session = new NodeSession(nodeEnd, new BufferedReader(nodeEnd), {
    modules: [],
    limits: DEFAULT_LIMITS,
    ...options,
  });
  const running = session.run();
  assert.equal((await frame())?.kind, "join");
  await send({ kind: "accept" });
  const files = { ...(task.key === undefined ? {} : { ".vico/task": task.key + "\n" }), ...task.programs };
  for (const [name, text] of Object.entries(files)) {
    await send({ kind: "file", name, size: new TextEncoder().encode(text).length }, text);
    await accepted(name);
  }
  for (const run of task.runs) {
    await send({ kind: "run", ...run });
    await accepted(`run ${run.program}`);
  }
  for (const name of task.rets) {
    await send({ kind: "ret", name });
    await accepted(`ret ${name}`);
  }
  await send({ kind: "wait" });
  await send({ kind: "start" });
  assert.equal((await frame(true))?.kind, "started");
  const finished = await frame();
  assert.equal(finished?.kind, "finished");
  await send({ kind: "accept" });
  const results: (string | null)[] = [];
  for (const _ of task.rets) {
    const result = await frame() as { kind: string; size: number; missing: boolean };
    assert.equal(result.kind, "result");
    results.push(result.missing ? null : new TextDecoder().decode(await reader.readExact(result.size)));
  }
  assert.deepEqual(await frame(), { kind: "leave" });
  await send({ kind: "accept" });
  assert.equal((await running).kind, "done");
  ownerEnd.close();
  return { status: (finished as { status: number }).status, results };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("NodeSession runs each program through runProcess (posix_spawn), writing its log; VICO_SLOT per running task, VICO_SEQ from the key's seq=", async () => {
  const workDir = await Deno.makeTempDir();
  try {
    const vias: (string | undefined)[] = [];
    const run: typeof runProcess = async (argv, options) => {
      const outcome = await runProcess(argv, options);
      vias.push(outcome.via);
      return outcome;
    };
    const program = 'echo "slot=$VICO_SLOT seq=${VICO_SEQ-none}"; sleep 0.5; echo "stderr too" >&2';
    const task = (key?: string) =>
      oneTask({ workDir, run }, {
        key,
        programs: { "p.sh": program },
        runs: [{ program: "p.sh", log: "out.log" }, { program: "p.sh", log: "out.log" }],
        rets: ["out.log"],
      });
    // Two at once under one work directory: slots 1 and 2.
    const both = await Promise.all([task("run=r key=k1 attempt=1 seq=7"), task()]);
    assert.deepEqual(both.map((t) => t.status), [0, 0]);
    const logs = both.map((t) => t.results[0]!);
    const slots = logs.map((log) => /^slot=(\d) /.exec(log)?.[1]).sort();
    assert.deepEqual(slots, ["1", "2"]);
    const slotOf = (log: string) => /^slot=(\d) /.exec(log)![1];
    assert.equal(logs[0], `slot=${slotOf(logs[0])} seq=7\nstderr too\n`.repeat(2), "two runs, one log, in order");
    assert.equal(logs[1], `slot=${slotOf(logs[1])} seq=none\nstderr too\n`.repeat(2));
    assert.deepEqual(vias, ["posix_spawn", "posix_spawn", "posix_spawn", "posix_spawn"]);
    // Alone again: slot 1.
    const again = await task();
    assert.match(again.results[0]!, /^slot=1 /);
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});

for (const via of ["posix_spawn", "command"] as const) {
  Deno.test(`NodeSession: a log over --max-output ends its run with 125, the log cut at the limit with the one note (${via})`, async () => {
    const workDir = await Deno.makeTempDir();
    try {
      const { status, results } = await oneTask({
        workDir,
        limits: { ...DEFAULT_LIMITS, maxOutputBytes: 10 },
        killGraceMs: 300,
        run: (argv, options) => runProcess(argv, { ...options, via }),
      }, {
        programs: { "a.sh": "echo 12345", "b.sh": "printf abcdefghij; sleep 30", "c.sh": "echo never" },
        runs: [{ program: "a.sh", log: "out.log" }, { program: "b.sh", log: "out.log" }, {
          program: "c.sh",
          log: "c.log",
        }],
        rets: ["out.log", "c.log"],
      });
      assert.equal(status, STATUS_RUNNER_FAILURE);
      assert.deepEqual(results, ["12345\nabcd\n" + outputLimitNote(10), ""], "the run after it did not run");
    } finally {
      await Deno.remove(workDir, { recursive: true });
    }
  });
}
