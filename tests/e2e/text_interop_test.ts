/**
 * Interoperability of the text protocol with an independent implementation
 * written from the protocol notes alone (tests/interop/peer.py, Python):
 * their runner against our manager, our runner against their manager.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, ROOT, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const PEER = ROOT + "tests/interop/peer.py";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Jobs and the exact output and status each must produce. */
const JOBS: [command: string, status: number, output: Uint8Array][] = [
  [`printf 'a   b  "q"  '"'s'"'\\n'`, 0, enc.encode(`a   b  "q"  's'\n`)],
  [`printf '\\000\\377\\303\\050'`, 0, new Uint8Array([0, 0xff, 0xc3, 0x28])],
  ["true", 0, new Uint8Array()],
  ["exit 7", 7, new Uint8Array()],
  ["kill -9 $$", 137, new Uint8Array()],
  ["echo same", 0, enc.encode("same\n")],
  ["echo same", 0, enc.encode("same\n")],
  ["echo o; echo e >&2; echo o2", 0, enc.encode("o\ne\no2\n")],
  ["head -c 3000000 /dev/zero | tr '\\0' 'z'", 0, enc.encode("z".repeat(3_000_000))],
  ...Array.from({ length: 40 }, (_, i) => [`echo n${i}`, 0, enc.encode(`n${i}\n`)] as [string, number, Uint8Array]),
];

async function writeJobs(dir: string): Promise<string> {
  const path = join(dir, "jobs.txt");
  await Deno.writeTextFile(path, JOBS.map(([c]) => c).join("\n") + "\n");
  return path;
}

/** Starts the independent text runner (two workers, named `name`) against our manager on `port`. */
function startTheirRunner(port: number, name: string): EntryProcess {
  return EntryProcess.spawnProgram("python3", [
    ...[PEER, "text-runner", "--manager", `127.0.0.1:${port}`, "--workers", "2", "--name", name],
  ]);
}

Deno.test("interop: an independent text runner drains our manager's list byte-exact", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, JOBS.map(([c]) => c));
  await using _m = manager;
  await using peer = startTheirRunner(port, "py-runner");
  const [ms, ps] = await Promise.all([manager.exit(), peer.exit()]);
  assert.equal(ps.code, 0, peer.stderr);
  assert.equal(ms.code, 1, "two jobs fail, so the manager exits 1");
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, JOBS.length);
  JOBS.forEach(([command, status, output], i) => {
    const r = recs.get(i + 1)!;
    assert.equal(r.command, command);
    assert.equal(r.status, status, command);
    assert.equal(r.host, "py-runner");
    assert.deepEqual(readOutput(results, r), output, command);
  });
});

Deno.test("interop: our runner drains an independent text manager's list byte-exact", async () => {
  await using dir = await tempDir();
  const list = await writeJobs(dir.path);
  const results = join(dir.path, "py-res");
  await using peer = EntryProcess.spawnProgram("python3", [
    PEER,
    "text-manager",
    "--jobs",
    list,
    "--port",
    "0",
    "--results",
    results,
  ]);
  const port = Number((await peer.waitFor(/LISTENING (\d+)/))[1]);
  await using runner = startRunner(port, ["--workers", "3", "--name", "ts-runner"]);
  const [ps, rs] = await Promise.all([peer.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ps.code, 1, `two jobs fail, so their manager exits 1\n${peer.stderr}`);
  const lines = Deno.readTextFileSync(join(results, "results.jsonl")).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, JOBS.length);
  for (const rec of lines) {
    const [command, status, output] = JOBS[rec.line - 1];
    assert.equal(rec.job, command);
    assert.equal(rec.status, status, command);
    assert.equal(rec.host, "ts-runner");
    assert.deepEqual(Deno.readFileSync(join(results, `${rec.line}.out`)), output, command);
  }
});

Deno.test("interop: our runner and an independent one share one manager, each job recorded once", async () => {
  await using dir = await tempDir();
  const n = 300;
  const { manager, port, results } = await startManagerOn(
    dir.path,
    Array.from({ length: n }, (_, i) => `echo job-${i}; sleep 0.0${i % 3}`),
  );
  await using _m = manager;
  await using ours = startRunner(port, ["--workers", "2", "--name", "ours"]);
  await using theirs = startTheirRunner(port, "theirs");
  const [ms, os, ts] = await Promise.all([manager.exit(), ours.exit(), theirs.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(os.code, 0, ours.stderr);
  assert.equal(ts.code, 0, theirs.stderr);
  const recs = byLine(readRecords(results));
  assert.equal(recs.size, n);
  for (const [line, r] of recs) assert.equal(dec.decode(readOutput(results, r)), `job-${line - 1}\n`);
  const hosts = new Set([...recs.values()].map((r) => r.host));
  assert.deepEqual([...hosts].sort(), ["ours", "theirs"]);
});
