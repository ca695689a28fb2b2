/**
 * End to end: the real `manager.ts` and `runner.ts` as processes, over
 * loopback TCP, with real jobs.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  EntryProcess,
  freePort,
  ROOT,
  RUN_FLAGS,
  startManagerOn,
  startRunner,
  TEST_ENV,
} from "../helpers/entry_process.ts";
import { byLine, readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("manager and runner: every kind of job comes back byte-exact with its status", async () => {
  await using dir = await tempDir();
  const jobs = [
    `printf 'a   b  "quoted"  '"'single'"'\\n'`, // 1: runs of spaces and quotes
    `printf '\\000\\377\\303\\050end'`, // 2: NUL and invalid UTF-8
    "true", // 3: empty output
    "exit 3", // 4
    "kill -9 $$", // 5: signal 9
    "kill -TERM $$", // 6: signal 15
    "no-such-command-for-vico", // 7: cannot start
    "echo dup", // 8
    "echo dup", // 9: duplicate line
    "echo out1; echo err >&2; echo out2", // 10: merged in order
    "echo trailing   ", // 11: trailing spaces kept
    "# a comment line",
    "",
    "printf '%s' 'ŝanĝo'", // 14: unicode
  ];
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "3", "--name", "node-a"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 1, "some jobs failed, so the manager exits 1");

  const recs = byLine(readRecords(results));
  assert.equal(recs.size, 12);
  const expect: [line: number, status: number, output: Uint8Array | RegExp][] = [
    [1, 0, enc.encode(`a   b  "quoted"  'single'\n`)],
    [2, 0, new Uint8Array([0, 0xff, 0xc3, 0x28, ...enc.encode("end")])],
    [3, 0, new Uint8Array()],
    [4, 3, new Uint8Array()],
    [5, 137, new Uint8Array()],
    [6, 143, new Uint8Array()],
    [7, 127, /no-such-command-for-vico: not found/],
    [8, 0, enc.encode("dup\n")],
    [9, 0, enc.encode("dup\n")],
    [10, 0, enc.encode("out1\nerr\nout2\n")],
    [11, 0, enc.encode("trailing\n")],
    [14, 0, enc.encode("ŝanĝo")],
  ];
  for (const [line, status, output] of expect) {
    const r = recs.get(line)!;
    assert.equal(r.status, status, `line ${line}`);
    assert.equal(r.command, jobs[line - 1]);
    assert.equal(r.host, "node-a");
    assert.equal(r.attempt, 1);
    const got = readOutput(results, r);
    if (output instanceof RegExp) assert.match(dec.decode(got), output);
    else assert.deepEqual(got, output, `line ${line}`);
    assert.equal(r.size, got.length);
    assert.equal(r.sha256, createHash("sha256").update(got).digest("hex"));
    assert.ok(Date.parse(r.start) <= Date.parse(r.end));
  }
  assert.notEqual(recs.get(8)!.key, recs.get(9)!.key, "duplicate lines get distinct keys");
  assert.match(manager.stdout, /12 job\(s\) run .* 8 succeeded, 4 failed/);
  assert.match(manager.stdout, /node-a\s+12 job\(s\)/);
});

Deno.test("manager and runners: a 1,000-job list across two runners, every output byte-exact", async () => {
  await using dir = await tempDir();
  const n = 1000;
  const jobs = Array.from({ length: n }, (_, i) => `printf 'job %d %s\\n' ${i} "$(printf '%0${i % 97}d' 0)"`);
  const { manager, port, results } = await startManagerOn(dir.path, jobs);
  await using _m = manager;
  await using r1 = startRunner(port, ["--workers", "2", "--name", "left"]);
  await using r2 = startRunner(port, ["--workers", "3", "--name", "right"]);
  const [ms, s1, s2] = await Promise.all([manager.exit(), r1.exit(), r2.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(s1.code, 0, r1.stderr);
  assert.equal(s2.code, 0, r2.stderr);
  const records = readRecords(results);
  assert.equal(records.length, n);
  const recs = byLine(records);
  for (let i = 0; i < n; i++) {
    const expected = `job ${i} ${"0".repeat(Math.max(1, i % 97))}\n`; // printf '%00d' 0 prints "0"
    assert.equal(dec.decode(readOutput(results, recs.get(i + 1)!)), expected);
  }
  const hosts = new Set(records.map((r) => r.host));
  assert.deepEqual([...hosts].sort(), ["left", "right"]);
});

Deno.test("runner --workers N: the manager sees N jobs in flight at once", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(
    dir.path,
    Array.from({ length: 8 }, (_, i) => `sleep 0.6; echo ${i}`),
  );
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "4"]);
  const t0 = performance.now();
  await Promise.all([manager.exit(), runner.exit()]);
  const records = readRecords(results);
  let peak = 0;
  for (const r of records) {
    const t = Date.parse(r.start) + 1;
    peak = Math.max(peak, records.filter((o) => Date.parse(o.start) <= t && Date.parse(o.end) > t).length);
  }
  assert.equal(peak, 4);
  assert.ok(performance.now() - t0 < 4000, "two waves of 0.6 s, not eight");
});

Deno.test("manager: output of 100 MB streams through disk; manager and runner memory stay bounded", async () => {
  await using dir = await tempDir();
  const size = 100 * 1024 * 1024 + 123; // past the direct-write mark, with a tail of no whole block
  const command = `yes 'vico streams output through disk, never whole in memory' | head -c ${size}`;
  const { manager, port, results } = await startManagerOn(dir.path, [command]);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "1"]);
  let managerPeak = 0, runnerPeak = 0;
  const sampler = setInterval(() => {
    managerPeak = Math.max(managerPeak, manager.peakRss());
    runnerPeak = Math.max(runnerPeak, runner.peakRss());
  }, 50);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  clearInterval(sampler);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(rs.code, 0, runner.stderr);
  const [rec] = readRecords(results);
  assert.equal(rec.size, size);
  const expected = await new Deno.Command("/bin/sh", { args: ["-c", `${command} | sha256sum`] }).output();
  assert.equal(rec.sha256, dec.decode(expected.stdout).split(" ")[0]);
  const stored = await Deno.readFile(join(results, rec.output!));
  assert.equal(createHash("sha256").update(stored).digest("hex"), rec.sha256);
  const MB = 1024 * 1024;
  assert.ok(managerPeak > 0 && runnerPeak > 0, "memory was sampled");
  assert.ok(managerPeak < 150 * MB, `manager peak RSS ${(managerPeak / MB).toFixed(0)} MB`);
  assert.ok(runnerPeak < 150 * MB, `runner peak RSS ${(runnerPeak / MB).toFixed(0)} MB`);
});

Deno.test("manager: two big outputs at once (runner -w2, both past the direct-write mark) are each recorded byte for byte", async () => {
  await using dir = await tempDir();
  const commands = [1, 2].map((n) => `yes 'output ${n}, its own bytes' | head -c ${30 * 1024 * 1024 + n * 1000}`);
  const { manager, port, results } = await startManagerOn(dir.path, commands);
  await using _m = manager;
  await using runner = startRunner(port, ["--workers", "2"]);
  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(rs.code, 0, runner.stderr);
  const records = byLine(readRecords(results));
  for (const [i, command] of commands.entries()) {
    const rec = records.get(i + 1)!;
    const expected = await new Deno.Command("/bin/sh", { args: ["-c", `${command} | sha256sum`] }).output();
    assert.equal(rec.sha256, dec.decode(expected.stdout).split(" ")[0], `job ${i + 1}`);
    const stored = createHash("sha256");
    const file = await Deno.open(join(results, rec.output!));
    for await (const chunk of file.readable) stored.update(chunk); // the stream closes the file
    assert.equal(stored.digest("hex"), rec.sha256, `job ${i + 1} on disk`);
  }
});

Deno.test("manager: a runner killed with SIGKILL mid-job gives its jobs back; another finishes them", async () => {
  await using dir = await tempDir();
  const { manager, port, results } = await startManagerOn(
    dir.path,
    Array.from({ length: 4 }, (_, i) => `sleep 1; echo done-${i}`),
  );
  await using _m = manager;
  await using doomed = startRunner(port, ["--workers", "2", "--name", "doomed"]);
  await manager.waitFor(/Runner doomed joined/);
  await new Promise((r) => setTimeout(r, 400));
  doomed.kill("SIGKILL");
  await doomed.exit();
  await manager.waitFor(/2 job\(s\) of runner doomed go back to the queue/);
  await using rescuer = startRunner(port, ["--workers", "2", "--name", "rescuer"]);
  const [ms, rs] = await Promise.all([manager.exit(), rescuer.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(rs.code, 0, rescuer.stderr);
  const records = readRecords(results);
  assert.equal(records.length, 4, "each job recorded exactly once");
  assert.deepEqual(records.map((r) => r.host), ["rescuer", "rescuer", "rescuer", "rescuer"]);
  assert.deepEqual(records.map((r) => r.attempt).sort(), [1, 1, 2, 2]);
  for (const r of records) assert.equal(dec.decode(readOutput(results, r)), `done-${r.line - 1}\n`);
});

Deno.test("manager --jobs - reads the list from standard input", async () => {
  await using dir = await tempDir();
  const results = join(dir.path, "res");
  await using manager = EntryProcess.spawn("manager.ts", ["--jobs", "-", "--results", results, "--local", "2"], {
    stdin: "echo one\necho two\n",
  });
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  assert.equal(readRecords(results).length, 2);
});

Deno.test("manager --local: a complete local run; a second run on the same results skips settled jobs", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "work.txt");
  await Deno.writeTextFile(list, "echo a\necho b\necho c\n");
  await using first = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "2"]);
  assert.equal((await first.exit()).code, 0, first.stderr);
  const results = join(dir.path, "work.results");
  assert.equal(readRecords(results).length, 3, "default results directory sits next to the job list");
  await using second = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "2"]);
  assert.equal((await second.exit()).code, 0, second.stderr);
  assert.match(second.stdout, /3 job\(s\) were settled by an earlier run/);
  assert.equal(readRecords(results).length, 3, "nothing recorded twice");
});

Deno.test("manager --local without --port: it opens no port and its workers hold no connection (in-process)", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "work.txt");
  // Each job lists the socket inodes its parent (the manager, which spawned
  // it) holds open, then the kernel's TCP tables, where a socket shows its
  // state (and where this test's own listener shows the tables are read).
  const job = "ls -l /proc/$PPID/fd | sed -n 's/.*socket:\\[\\([0-9]*\\)\\].*/inode \\1/p'; " +
    "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null";
  await Deno.writeTextFile(list, `${job}\n${job} # 2\n`);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ours = listener.addr.port.toString(16).toUpperCase().padStart(4, "0");
  await using manager = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "2"]);
  assert.equal((await manager.exit()).code, 0, manager.stderr);
  assert.match(manager.stderr, /on this machine \(2 worker\(s\); no port open\)/);
  const results = join(dir.path, "work.results");
  const records = readRecords(results);
  assert.equal(records.length, 2);
  for (const record of records) {
    const text = dec.decode(readOutput(results, record));
    assert.ok(text.includes(`:${ours} `), `the tables are read (this test's listener is in them): ${text}`);
    const inodes = new Set([...text.matchAll(/^inode (\d+)$/gm)].map((m) => m[1]));
    // /proc/net/tcp: "sl local rem st ... uid timeout inode"; st 0A listens, 01 is established.
    const states = text.split("\n").map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length > 9 && inodes.has(f[9])).map((f) => f[3]);
    assert.deepEqual(states, [], "no TCP socket: no port to join, and local workers talk in-process");
  }
});

Deno.test("manager --local: a runner cannot join a local run; with --port it can", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "sleep 0.3\n".repeat(10));
  await using local = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "1", "-v"]);
  await local.waitFor(/no port open/);
  assert.equal((await local.exit()).code, 0, local.stderr);
  assert.doesNotMatch(local.stderr, /127\.0\.0\.1:\d+/, "no address to join is named");
  // The same run served as well: its port is named, and a runner there takes jobs.
  const port = freePort();
  await using served = EntryProcess.spawn("manager.ts", [
    "--jobs",
    list,
    "--local",
    "1",
    "--port",
    String(port),
    "--results",
    join(dir.path, "served"),
  ]);
  await served.waitFor(new RegExp(`127\\.0\\.0\\.1:${port}`));
  await using runner = EntryProcess.spawn("runner.ts", ["--manager", `127.0.0.1:${port}`, "--workers", "1"]);
  assert.equal((await served.exit()).code, 0, served.stderr);
  await runner.exit();
  assert.ok(readRecords(join(dir.path, "served")).some((r) => !String(r.host).startsWith("local-")), served.stderr);
});

Deno.test("manager refuses an invalid job list with its line number, exit 2, before anything runs", async () => {
  // PULSO: a runner with pulses took such a job line for a pulse and never ran it, hanging the run.
  for (const reserved of ["FINO", "PULSO"]) {
    await using dir = await tempDir();
    const list = join(dir.path, "bad.txt");
    const marker = join(dir.path, "ran");
    await Deno.writeTextFile(list, `touch ${marker}\n# fine\n${reserved}\n`);
    await using manager = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "1"]);
    assert.equal((await manager.exit()).code, 2);
    assert.match(manager.stderr, new RegExp(`bad\\.txt: line 3: job is exactly "${reserved}"`));
    assert.ok(!(await Deno.stat(marker).catch(() => null)), "nothing ran");
  }
});

Deno.test("manager and runner: --help exits 0, bad flags exit 2 with a reason", async () => {
  for (const entry of ["manager.ts", "runner.ts"]) {
    await using help = EntryProcess.spawn(entry, ["--help"]);
    assert.equal((await help.exit()).code, 0);
    assert.match(help.stdout, /^Usage: /);
    assert.match(help.stdout, /Exit status:/);
    await using bad = EntryProcess.spawn(entry, ["--no-such-flag"]);
    assert.equal((await bad.exit()).code, 2);
    assert.match(bad.stderr, /no-such-flag/);
  }
  await using noJobs = EntryProcess.spawn("manager.ts", []);
  assert.equal((await noJobs.exit()).code, 2);
  assert.match(noJobs.stderr, /--jobs FILE is required/);
  await using badWorkers = EntryProcess.spawn("runner.ts", ["--manager", "x", "--workers", "0"]);
  assert.equal((await badWorkers.exit()).code, 2);
});

Deno.test("manager exits 3 when its port is taken", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using manager = EntryProcess.spawn("manager.ts", ["--jobs", list, "--port", String(listener.addr.port)]);
  assert.equal((await manager.exit()).code, 3);
  assert.match(manager.stderr, /already in use/);
});

Deno.test("manager --local exits 3 at once when its workers' spool cannot be made in TMPDIR, naming it; runner too (exit 3)", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  const results = join(dir.path, "results");
  const missing = join(dir.path, "missing");
  // /dev: Deno's permissions refuse it to anything but --allow-all (a tmpfs at /dev/shm is the common case).
  for (
    const [tmp, reason] of [[
      "/dev",
      /Deno's permissions refuse it; use a directory outside \/dev, \/proc and \/sys as TMPDIR/,
    ], [missing, /No such file/]] as const
  ) {
    await using manager = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "2", "--results", results], {
      env: { TMPDIR: tmp },
    });
    const started = performance.now();
    assert.equal((await manager.exit()).code, 3, manager.stderr);
    assert.ok(performance.now() - started < 15_000, "it does not wait for runners that never come");
    const line =
      `manager: cannot start: cannot prepare the local workers: cannot make a temporary directory in ${tmp} (TMPDIR): `;
    assert.ok(manager.stderr.includes(line), manager.stderr);
    assert.match(manager.stderr, reason);
    // Refused before anything else was done: the results directory was not even made.
    assert.equal(await Deno.lstat(results).then(() => true, () => false), false);
  }
  // A list of task bundles: its local binary node's work directory goes there too.
  const bundles = join(dir.path, "tasks.jsonl");
  await Deno.writeTextFile(bundles, '{"name":"a","run":[{"command":"echo hi","log":"a.log"}]}\n');
  await using node = EntryProcess.spawn("manager.ts", ["--jobs", bundles, "--local", "2"], { env: { TMPDIR: "/dev" } });
  assert.equal((await node.exit()).code, 3, node.stderr);
  assert.ok(
    node.stderr.includes(
      "manager: cannot start: cannot prepare the local node: cannot make a temporary directory in /dev (TMPDIR): ",
    ),
    node.stderr,
  );
  await using runner = EntryProcess.spawn("runner.ts", ["--manager", "127.0.0.1:1", "--workers", "2"], {
    env: { TMPDIR: "/dev" },
  });
  assert.equal((await runner.exit()).code, 3, "could not start, as the manager says it");
  assert.match(
    runner.stderr,
    /Cannot prepare the runner: cannot make a temporary directory in \/dev \(TMPDIR\): Deno's permissions refuse it/,
  );
});

Deno.test("manager -j N under a low ulimit -n: raised as far as N jobs need, or refused at once (exit 3) when it cannot be", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, Array.from({ length: 100 }, (_, i) => `sleep 0.1; echo ${i}\n`).join(""));
  const run = (ulimit: string, results: string) =>
    new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit ${ulimit} && exec "$0" "$@"`,
        Deno.execPath(),
        ...RUN_FLAGS,
        ROOT + "manager.ts",
        "--jobs",
        list,
        "--local",
        "50",
        "--results",
        join(dir.path, results),
        "-q",
      ],
      cwd: dir.path,
      env: { ...TEST_ENV },
      stdout: "piped",
      stderr: "piped",
    }).output();
  // A soft limit of 100 (50 jobs need more): raised, and every job runs (before, dozens failed with EMFILE or were lost).
  const raised = await run("-Sn 100", "raised");
  assert.equal(raised.code, 0, new TextDecoder().decode(raised.stderr));
  const records = readRecords(join(dir.path, "raised"));
  assert.equal(records.length, 100);
  assert.ok(records.every((r) => r.status === 0), "no job failed for want of descriptors");
  // A hard limit of 40: nothing can run 50 jobs, and it says so before anything runs.
  const low = await run("-n 40", "low");
  const stderr = new TextDecoder().decode(low.stderr);
  assert.equal(low.code, 3, stderr);
  assert.match(
    stderr,
    /^manager: -j 50 needs about 264 open files, and this process may have 40 \(ulimit -n; hard limit 40\)/m,
  );
  assert.equal(await Deno.lstat(join(dir.path, "low")).then(() => true, () => false), false, "nothing was made");
});

Deno.test("manager draws a progress bar with rate and ETA on a terminal, and none when piped", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "sleep 0.25\n".repeat(12));
  const cmd = [Deno.execPath(), "run", "-q", "-P=vico", "manager.ts", "--jobs", list, "--local", "3"];
  // `script` gives the manager a pseudo-terminal as stdout and stderr.
  const tty = await new Deno.Command("script", {
    args: ["-qfec", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"],
    cwd: new URL("../../", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(tty.code, 0);
  const screen = dec.decode(tty.stdout);
  assert.match(screen, /\[#+-*\] \d+\/12 \d+%\s+[\d.]+ jobs\/s\s+ETA \d+s/);
  assert.ok(screen.includes("\x1b[2K"), "the bar is redrawn in place");
  await using piped = EntryProcess.spawn("manager.ts", ["--jobs", list, "--local", "3"]);
  assert.equal((await piped.exit()).code, 0);
  assert.doesNotMatch(piped.stderr + piped.stdout, /ETA/);
});
