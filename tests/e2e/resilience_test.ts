/**
 * Failure handling of the real processes: oversized outputs, signals,
 * stalled transfers, connection floods.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";
import { LinePeer, LineServer } from "../helpers/line_peer.ts";

const dec = new TextDecoder();
const ps = () => dec.decode(new Deno.Command("ps", { args: ["-eo", "args"] }).outputSync().stdout);

Deno.test("runner --max-output: a job writing more fails alone with status 125; the others go on", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, [
    "sleep 0.5; echo slow-a",
    "head -c 5000 /dev/zero",
    "sleep 0.5; echo slow-b",
  ]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2", "--max-output", "1000"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 1);
  const recs = byLine(readRecords(results));
  assert.equal(recs.get(2)!.status, 125);
  assert.match(
    dec.decode(readOutput(results, recs.get(2)!)),
    /Output exceeds the limit of 1000 bytes; the job was killed/,
  );
  assert.equal(dec.decode(readOutput(results, recs.get(1)!)), "slow-a\n");
  assert.equal(dec.decode(readOutput(results, recs.get(3)!)), "slow-b\n");
});

Deno.test("runner: SIGTERM finishes and reports running jobs, takes no new ones, exits 0", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, [
    "sleep 1; echo first",
    "sleep 1; echo second",
    "echo third",
  ]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2", "--name", "leaving"]);
  await manager.waitFor(/Runner leaving joined/);
  await new Promise((r) => setTimeout(r, 300));
  runner.kill("SIGTERM");
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.match(runner.stderr, /SIGTERM: taking no new jobs/);
  assert.deepEqual(readRecords(results).map((r) => r.command).sort(), ["sleep 1; echo first", "sleep 1; echo second"]);
  await using other = startRunner(port, ["--name", "other"]);
  const [ms] = await Promise.all([manager.exit(), other.exit()]);
  assert.equal(ms.code, 0);
  assert.equal(readRecords(results).length, 3, "the third job ran on the other runner; nothing twice");
});

Deno.test("runner: a job killed by the same SIGTERM that stops the runner (as Slurm signals a step) runs again", async () => {
  await using dir = await tempDir();
  const pidFile = join(dir.path, "job.pid");
  const marker = join(dir.path, "ran-once");
  // First run: note the pid and wait to be signalled. Second run (elsewhere): finish.
  const job =
    `if [ -e ${marker} ]; then echo second-run; else touch ${marker}; echo $$ > ${pidFile}; exec sleep 60; fi`;
  const { manager, port, results } = await startManagerOn(dir.path, [job, "echo other"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--name", "step"]);
  let pid = 0;
  for (let i = 0; i < 200 && pid === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    pid = Number(await Deno.readTextFile(pidFile).catch(() => "0"));
  }
  assert.ok(pid > 0, "the job started");
  // A batch system's stop: SIGTERM to every process of the step, the runner and its job alike.
  runner.kill("SIGTERM");
  Deno.kill(pid, "SIGTERM");
  assert.equal((await runner.exit()).code, 0, runner.stderr);
  assert.match(runner.stderr, /was ended by the signal that stops this runner \(exit 143\); it is not reported/);
  assert.deepEqual(readRecords(results), [], "no result recorded for the killed job");
  await using other = startRunner(port, ["--name", "other"]);
  const [ms] = await Promise.all([manager.exit(), other.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 2);
  const rerun = records.find((r) => r.command === job)!;
  assert.equal(rerun.status, 0);
  assert.equal(rerun.host, "other");
  assert.equal(dec.decode(readOutput(results, rerun)), "second-run\n");
});

Deno.test("runner: a second SIGTERM kills running jobs (no orphans); the manager requeues them", async () => {
  await using dir = await tempDir();
  const { manager, port } = await startManagerOn(dir.path, ["sleep 289.3; echo never"]);
  await using _m = manager;
  await using runner = startRunner(port, ["--name", "doomed"]);
  await manager.waitFor(/Runner doomed joined/);
  await new Promise((r) => setTimeout(r, 300));
  assert.match(ps(), /sleep 289\.3/);
  runner.kill("SIGTERM");
  await runner.waitFor(/taking no new jobs/);
  runner.kill("SIGTERM");
  assert.equal((await runner.exit()).code, 143);
  assert.doesNotMatch(ps(), /sleep 289\.3/);
  await manager.waitFor(/1 job\(s\) of runner doomed go back to the queue/);
  manager.kill("SIGTERM");
  assert.equal((await manager.exit()).code, 143);
});

Deno.test("manager --local: SIGTERM kills local jobs, exits 143; a rerun finishes what was left", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  // A sleep of its own (ps is machine-wide: other runs of this test may be about).
  const slow = `sleep 288.${Deno.pid}${Math.floor(Math.random() * 1e6)}`;
  const mine = new RegExp(slow.replace(".", "\\."));
  await Deno.writeTextFile(list, `echo quick\n${slow}; echo slow\n`);
  const results = join(dir.path, "res");
  await using first = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--local", "2"]);
  await first.waitFor(/Running 2 job/);
  // Both jobs under way: the quick one recorded, the slow one running (ps is
  // machine-wide, so the record is what says this run got that far).
  const recorded = () => {
    try {
      return readRecords(results).length > 0;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && !(recorded() && mine.test(ps())); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  first.kill("SIGTERM");
  assert.equal((await first.exit()).code, 143, first.stderr);
  assert.match(first.stdout, /stopped with 1 job\(s\) unsettled/);
  assert.doesNotMatch(ps(), mine, "the local job was killed with the manager");
  assert.deepEqual(readRecords(results).map((r) => r.command), ["echo quick"]);
  await Deno.writeTextFile(list, "echo quick\nsleep 0.1; echo slow\n");
  await using second = EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", results, "--local", "2"]);
  assert.equal((await second.exit()).code, 0, second.stderr);
  assert.deepEqual(readRecords(results).map((r) => r.command), ["echo quick", "sleep 0.1; echo slow"]);
});

Deno.test("manager --transfer-timeout: a runner that stalls mid-output is dropped; its job runs elsewhere", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["echo payload"], ["--transfer-timeout", "1s"]);
  await using _m = manager;
  using staller = await LinePeer.connect(port);
  await staller.hail("staller");
  await staller.line("PETO");
  const job = await staller.read();
  await staller.line(`REZULTO ${job} 0 100`);
  assert.equal(await staller.read(), "PRETA");
  await staller.send("ten bytes.");
  await manager.waitFor(/Lost runner staller .*no output for 1s/, 10_000);
  await using honest = startRunner(port, ["--name", "honest"]);
  const [ms] = await Promise.all([manager.exit(), honest.exit()]);
  assert.equal(ms.code, 0);
  const [rec] = readRecords(results);
  assert.equal(rec.host, "honest");
  assert.equal(rec.attempt, 2);
});

Deno.test("manager --transfer-timeout: a runner that stalls mid-output past the direct-write mark (8 MiB) is dropped, nothing of it left in tmp/; its job runs elsewhere, recorded once byte for byte", async () => {
  await using dir = await tempDir();
  const size = 40 * 1024 * 1024 + 5;
  const command = `head -c ${size} /dev/zero | tr '\\0' v`;
  const { manager, port, results } = await startManagerOn(dir.path, [command], ["--transfer-timeout", "1s"]);
  await using _m = manager;
  using staller = await LinePeer.connect(port);
  await staller.hail("staller");
  await staller.line("PETO");
  const job = await staller.read();
  await staller.line(`REZULTO ${job} 0 ${size}`);
  assert.equal(await staller.read(), "PRETA");
  await staller.send(new Uint8Array(12 * 1024 * 1024).fill(0x76)); // past the mark, then silence
  await manager.waitFor(/Lost runner staller .*no output for 1s/, 10_000);
  assert.deepEqual([...Deno.readDirSync(join(results, "tmp"))], [], "the staged part dropped with its connection");
  await using honest = startRunner(port, ["--name", "honest"]);
  const [ms] = await Promise.all([manager.exit(), honest.exit()]);
  assert.equal(ms.code, 0);
  const [rec] = readRecords(results);
  assert.equal(rec.host, "honest");
  assert.equal(rec.size, size);
  const expected = await new Deno.Command("/bin/sh", { args: ["-c", `${command} | sha256sum`] }).output();
  assert.equal(rec.sha256, new TextDecoder().decode(expected.stdout).split(" ")[0]);
  const stored = await new Deno.Command("sha256sum", { args: [join(results, rec.output!)] }).output();
  assert.equal(new TextDecoder().decode(stored.stdout).split(" ")[0], rec.sha256);
});

Deno.test("manager: a flood of connections that never hail neither starves runners nor eats memory", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, Array.from({ length: 20 }, (_, i) => `echo ${i}`));
  await using _m = manager;
  const junk = "S" + "x".repeat(65_535);
  const flood: Deno.TcpConn[] = [];
  for (let i = 0; i < 600; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      flood.push(c);
      c.write(new TextEncoder().encode(junk)).catch(() => {});
    } catch {
      // Refused: fine.
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  const rss = manager.peakRss();
  await using runner = startRunner(port, ["--workers", "2"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  for (const c of flood) {
    try {
      c.close();
    } catch {
      // Closed by the manager.
    }
  }
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0);
  assert.equal(readRecords(results).length, 20);
  assert.match(manager.stderr, /connections are mid-handshake; closing the oldest ones/);
  assert.ok(manager.stderr.split("\n").length < 100, "failed handshakes are logged at a bounded rate");
  assert.ok(rss < 200 * 1024 * 1024, `manager peak RSS ${(rss / 1048576).toFixed(0)} MB under the flood`);
});

Deno.test("runner: a stray ERARO-like line while no worker waits is a protocol error, not a crash", async () => {
  using server = new LineServer();
  await using runner = startRunner(server.port, ["--plain"]);
  using m = await server.accept();
  await m.read();
  await m.line("VERSIO 1.1");
  await m.read();
  await m.read();
  await m.line("sleep 5");
  await m.line("ERAROx");
  assert.equal((await runner.exit()).code, 1);
  assert.match(runner.stderr, /Manager sent a line no worker asked for: "ERAROx"/);
});

/** Resolves every `arrive()` once `n` have arrived. */
interface Barrier {
  arrive(): Promise<void>;
}

function barrier(n: number): Barrier {
  let left = n;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    arrive() {
      if (--left === 0) open();
      return opened;
    },
  };
}

/**
 * One simulated text runner: hails, waits for the rest of the herd, then asks for jobs and reports each with
 * its command as output until FINO. Returns whether it was served (VERSIO).
 */
async function herdRunner(port: number, name: string, herd: Barrier): Promise<boolean> {
  let p: LinePeer | undefined;
  let joined = false;
  try {
    p = await LinePeer.connect(port);
    joined = (await p.hail(name)) === "VERSIO 1.1";
  } catch {
    // Not joined: counted as not served below.
  }
  // Nobody asks for a job before the whole herd has joined (or failed to):
  // otherwise the first ones could finish the list and the manager end
  // before the last ones connect (refused then, as they should be).
  await herd.arrive();
  if (p === undefined) return false;
  using peer = p;
  if (!joined) return false;
  try {
    while (true) {
      await peer.line("PETO");
      const job = await peer.read(60_000);
      if (job === "FINO" || job === null) break;
      const out = new TextEncoder().encode(job);
      await peer.line(`REZULTO ${job} 0 ${out.length}`);
      if ((await peer.read(60_000)) !== "PRETA") return false;
      await peer.send(out);
      if ((await peer.read(60_000)) !== "RICEVIS") return false;
    }
    await peer.line("FINO ANKAU");
    return true;
  } catch {
    return false;
  }
}

Deno.test("Server: a herd of 1,000 runners connecting at once is served with no handshake closed", async () => {
  await using dir = await tempDir();
  const jobs = Array.from({ length: 3000 }, (_, i) => `echo herd-${i}`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  const t0 = performance.now();
  const herd = barrier(1000);
  const served = await Promise.all(Array.from({ length: 1000 }, (_, i) => herdRunner(port, `herd-${i}`, herd)));
  assert.equal((await manager.exit(60_000)).code, 0, manager.stderr);
  assert.equal(served.filter((s) => !s).length, 0, "every runner of the herd was served");
  assert.doesNotMatch(manager.stderr, /mid-handshake/, "no handshake was closed to make room");
  assert.equal(readRecords(results).length, 3000);
  assert.ok(performance.now() - t0 < 90_000, "the herd is served in bounded time");
});

Deno.test("Server: held-job lines on many handshakes share one byte budget; memory stays bounded", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(dir.path, ["echo budget"]);
  await using _m = manager;
  const line = new TextEncoder().encode("x".repeat(65_535) + "\n");
  const chunk = new Uint8Array(line.length * 16);
  for (let i = 0; i < 16; i++) chunk.set(line, i * line.length);
  // Four connections announce 10,000 held jobs of 64 KiB each (640 MiB
  // apiece) and send up to 256 MiB of them, never finishing.
  const greedy = await Promise.all(Array.from({ length: 4 }, async () => {
    const p = await LinePeer.connect(port);
    let sent = 0;
    try {
      await p.line("VICO/1 hello proto=text id=greedy holds=10000");
      while (sent < 256 * 1024 ** 2) {
        await p.send(chunk);
        sent += chunk.length;
      }
    } catch {
      // Closed by the manager.
    }
    return { p, sent };
  }));
  const rss = manager.peakRss();
  for (const { p } of greedy) p[Symbol.dispose]();
  await using runner = startRunner(port, ["--workers", "1"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(readRecords(results).length, 1);
  assert.ok(rss < 500 * 1024 * 1024, `manager peak RSS ${(rss / 1048576).toFixed(0)} MB`);
  assert.ok(greedy.every((g) => g.sent < 256 * 1024 ** 2), "every greedy handshake was cut off");
  assert.match(manager.stderr, /handshake budget/);
});
