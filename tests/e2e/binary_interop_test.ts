/**
 * Interoperability of the binary protocol with an independent implementation
 * written from the protocol notes alone (tests/interop/peer.py): their owner
 * drives our node; our manager drives their nodes.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { EntryProcess, ROOT, startManagerOnTasks, startNode } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const PEER = ROOT + "tests/interop/peer.py";
const dec = new TextDecoder();

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Starts the independent owner on `task` (results into `out`) and waits until it listens. */
async function startTheirOwner(task: string, out: string, extra: string[] = []) {
  const owner = EntryProcess.spawnProgram("python3", [
    PEER,
    "owner",
    "--port",
    "0",
    "--task",
    task,
    "--out",
    out,
    ...extra,
  ]);
  return { owner, port: Number((await owner.waitFor(/LISTENING (\d+)/))[1]) };
}

Deno.test("interop: an independent owner drives our node through a whole task", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  const data = new Uint8Array(3_000_000).map((_, i) => (i * 7) & 0xff);
  await Deno.writeFile(join(dir.path, "data.bin"), data);
  await Deno.writeTextFile(
    join(dir.path, "go.sh"),
    "mkdir -p out/sub\ncp in/data.bin out/sub/copy.bin\necho ran go.sh\n",
  );
  await Deno.writeTextFile(join(dir.path, "py.sh"), "#!/bin/sh\necho second; echo warn >&2\n");
  const task = {
    files: [
      { src: join(dir.path, "data.bin"), name: "in/data.bin" },
      { src: join(dir.path, "go.sh"), name: "go.sh" },
      { src: join(dir.path, "py.sh"), name: "bin/py.sh" },
    ],
    runs: [{ program: "go.sh", log: "go.log" }, { program: "bin/py.sh", log: "logs/py.log" }],
    rets: ["out/sub/copy.bin", "go.log", "logs/py.log", "missing.txt"],
  };
  await Deno.writeTextFile(join(dir.path, "task.json"), JSON.stringify(task));
  const out = join(dir.path, "out");
  const { owner, port } = await startTheirOwner(join(dir.path, "task.json"), out);
  await using _o = owner;
  await using node = startNode(port, ["--work-dir", work.path]);
  const [os, ns] = await Promise.all([owner.exit(), node.exit()]);
  assert.equal(os.code, 0, owner.stderr);
  assert.equal(ns.code, 0, node.stderr);
  const summary = JSON.parse(owner.stdout.trim().split("\n").at(-1)!);
  assert.equal(summary.status, 0);
  assert.match(summary.start_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(summary.rejects, []);
  assert.deepEqual(summary.results, {
    "out/sub/copy.bin": data.length,
    "go.log": "ran go.sh\n".length,
    "logs/py.log": 12,
    "missing.txt": null,
  });
  assert.equal(sha(Deno.readFileSync(join(out, "out/sub/copy.bin"))), sha(data));
  assert.equal(Deno.readTextFileSync(join(out, "logs/py.log")), "second\nwarn\n");
});

Deno.test("interop: an independent owner stops our node mid-run and still gets the partial results", async () => {
  await using dir = await tempDir();
  await using work = await tempDir();
  await Deno.writeTextFile(join(dir.path, "long.sh"), "echo started\nsleep 283.1\necho never\n");
  await Deno.writeTextFile(
    join(dir.path, "task.json"),
    JSON.stringify({
      files: [{ src: join(dir.path, "long.sh"), name: "long.sh" }],
      runs: [{ program: "long.sh", log: "long.log" }],
      rets: ["long.log"],
    }),
  );
  const out = join(dir.path, "out");
  const { owner, port } = await startTheirOwner(join(dir.path, "task.json"), out, ["--stop-after-ms", "500"]);
  await using _o = owner;
  await using node = startNode(port, ["--work-dir", work.path]);
  const [os, ns] = await Promise.all([owner.exit(), node.exit()]);
  assert.equal(os.code, 0, owner.stderr);
  assert.equal(ns.code, 0, node.stderr);
  const summary = JSON.parse(owner.stdout.trim().split("\n").at(-1)!);
  assert.equal(summary.status, 143);
  assert.equal(Deno.readTextFileSync(join(out, "long.log")), "started\n");
});

Deno.test("interop: independent nodes drain our manager's bundles, a gang shared with ours, byte-exact", async () => {
  await using dir = await tempDir();
  await using theirWork = await tempDir();
  await using ourWork = await tempDir();
  const blob = new Uint8Array(1_500_000).map((_, i) => (i * 13 + 5) & 0xff);
  await Deno.writeFile(join(dir.path, "blob.bin"), blob);
  const tasks = [
    { command: "echo plain job" },
    {
      name: "bundle",
      files: [{ src: "blob.bin", as: "in/blob.bin" }],
      run: [{ command: "mkdir -p r; cat in/blob.bin in/blob.bin > r/twice.bin; echo done", log: "b.log" }],
      return: ["r/twice.bin", "b.log", "absent"],
    },
    { name: "gang", command: "echo member", nodes: 2, modules: ["py"] },
    ...Array.from({ length: 10 }, (_, i) => ({ command: `printf '%s' task-${i}` })),
  ];
  const { manager, port, results } = await startManagerOnTasks(dir.path, tasks);
  await using _m = manager;
  await using theirs = EntryProcess.spawnProgram("python3", [
    PEER,
    "node",
    "--manager",
    `127.0.0.1:${port}`,
    "--work-dir",
    theirWork.path,
    "--modules",
    "py",
    "--workers",
    "2",
  ]);
  await using ours = startNode(port, ["--modules", "py", "--work-dir", ourWork.path]);
  const [ms, ts, os] = await Promise.all([manager.exit(), theirs.exit(), ours.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(ts.code, 0, theirs.stderr);
  assert.equal(os.code, 0, ours.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, tasks.length);
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "plain job\n");
  const bundle = recs.get(2)!;
  const twice = bundle.files!.find((f) => f.name === "r/twice.bin")!;
  const both = new Uint8Array(blob.length * 2);
  both.set(blob);
  both.set(blob, blob.length);
  assert.equal(twice.sha256, sha(both));
  assert.equal(sha(Deno.readFileSync(join(results, twice.path!))), sha(both));
  assert.ok(bundle.files!.find((f) => f.name === "absent")!.missing);
  const gang = recs.get(3)!;
  assert.equal(gang.nodes!.length, 2);
  for (const f of gang.files!) assert.equal(Deno.readTextFileSync(join(results, f.path!)), "member\n");
  for (let i = 0; i < 10; i++) assert.equal(dec.decode(readOutput(results, recs.get(4 + i)!)), `task-${i}`);
});
