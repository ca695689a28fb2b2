/**
 * The GNU Parallel front door (issue 15) over real processes: command
 * templates run locally with outputs on stdout, ad-hoc results directories,
 * run control (--dry-run, --halt, --shell, --joblog), {%}, usage errors, and
 * the same template served to a separate runner.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, LISTENING, ROOT, RUN_FLAGS, startRunner, TEST_ENV } from "../helpers/entry_process.ts";
import { canMountTinyDisk, fill, tinyDisk } from "../helpers/tiny_disk.ts";
import { readRecords, tempDir } from "../helpers/journal.ts";

/** Runs `manager ARGS` in `cwd`, to its end. */
async function manager(args: string[], cwd: string, stdin?: string) {
  await using p = EntryProcess.spawn("manager.ts", args, { cwd, ...(stdin === undefined ? {} : { stdin }) });
  const status = await p.exit();
  return { code: status.code, stdout: p.stdout, stderr: p.stderr };
}

Deno.test("manager -k COMMAND ::: A ::: B prints each job's output on stdout in argument order, as parallel -k", async () => {
  await using dir = await tempDir();
  const run = await manager(["-k", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"], dir.path);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "a-1\na-2\nb-1\nb-2\n");
  assert.match(run.stderr, /4 succeeded, 0 failed/, "the summary is on stderr");
  assert.doesNotMatch(run.stderr, /INFO/, "a local template run logs only warnings");
});

Deno.test("manager -j 4 COMMAND {} takes its arguments from stdin and prints whole outputs, never interleaved", async () => {
  await using dir = await tempDir();
  const names = Array.from({ length: 12 }, (_, i) => `f ${i}.txt`);
  for (const n of names) await Deno.writeTextFile(join(dir.path, n), "x\n".repeat(3));
  // Each job writes two lines with a pause between: interleaving would split them.
  const run = await manager(
    ["-j", "4", "echo begin {}; sleep 0.05; echo end {}"],
    dir.path,
    names.join("\n") + "\n",
  );
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 24);
  for (let i = 0; i < lines.length; i += 2) {
    assert.equal(lines[i + 1], lines[i].replace("begin", "end"), `whole outputs: ${run.stdout}`);
  }
  assert.deepEqual(lines.filter((l) => l.startsWith("begin")).map((l) => l.slice(6)).sort(), [...names].sort());
});

Deno.test("manager --tag prefixes each output line with the job's arguments and a tab", async () => {
  await using dir = await tempDir();
  const run = await manager(["-k", "--tag", "printf", "'%s\\n%s\\n'", "{}", "x", ":::", "a b", "c"], dir.path);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "a b\ta b\na b\tx\nc\tc\nc\tx\n");
});

Deno.test("an ad-hoc run gets a new results directory each time under vico-results/; --resume continues the latest", async () => {
  await using dir = await tempDir();
  const marker = join(dir.path, "count");
  const job = [`echo run >> ${marker}; echo {}`, ":::", "one"];
  const first = await manager(job, dir.path);
  const second = await manager(job, dir.path);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(Deno.readTextFileSync(marker), "run\nrun\n", "the same ad-hoc run twice runs twice");
  const runs = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name).sort();
  assert.equal(runs.length, 2);
  assert.match(runs[0], /^\d{4}-\d\d-\d\d-1$/);
  assert.match(first.stderr, new RegExp(`vico-results/${runs[0]}`), "the results directory is named on stderr");
  const resumed = await manager(["--resume", ...job], dir.path);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(Deno.readTextFileSync(marker), "run\nrun\n", "--resume ran nothing settled");
  assert.equal(readRecords(join(dir.path, "vico-results", runs[1])).length, 1);
});

Deno.test("manager --dry-run prints the commands, runs nothing, makes no results directory, exits 0", async () => {
  await using dir = await tempDir();
  const run = await manager(["--dry-run", "touch", "{}", ":::", "it's", "a b"], dir.path);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "touch 'it'\\''s'\ntouch 'a b'\n");
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test("manager --halt now,fail=1 ends the run at the first failure with that job's exit status", async () => {
  await using dir = await tempDir();
  const run = await manager(
    ["-j", "1", "--halt", "now,fail=1", "sh", "-c", 'test "$1" != 2 || exit 7; echo "$1"', "sh", ":::", "1", "2", "3"],
    dir.path,
  );
  assert.equal(run.code, 7, run.stderr);
  assert.match(run.stderr, /halting \(now\)/);
  assert.doesNotMatch(run.stdout, /3/, "no job after the failure started");
});

Deno.test("manager --halt exit status never reuses vico's own 2-4 (a job exiting 3 halts with 1)", async () => {
  await using dir = await tempDir();
  const run = await manager(["-j", "1", "--halt", "soon,fail=1", "exit", ":::", "3"], dir.path);
  assert.equal(run.code, 1, run.stderr);
});

Deno.test("manager --shell /bin/bash runs jobs under bash; {%} is the worker slot (VICO_SLOT)", async () => {
  await using dir = await tempDir();
  const run = await manager(
    ["-k", "--shell", "/bin/bash", "[[ -n {} ]] && echo ok $((1+1))", ":::", "a"],
    dir.path,
  );
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "ok 2\n");
  const slots = await manager(["-j", "3", "echo", "{%}", ":::", "a", "b", "c", "d", "e", "f"], dir.path);
  assert.equal(slots.code, 0, slots.stderr);
  const seen = slots.stdout.trim().split("\n").map(Number);
  assert.equal(seen.length, 6);
  assert.ok(seen.every((s) => s >= 1 && s <= 3), slots.stdout);
});

Deno.test("manager --joblog FILE writes Parallel's joblog: a header and one line per job", async () => {
  await using dir = await tempDir();
  const log = join(dir.path, "log.tsv");
  const run = await manager(
    ["-k", "--joblog", log, "echo {}; exit {}", ":::", "0", "4"],
    dir.path,
  );
  assert.equal(run.code, 1, run.stderr);
  const lines = Deno.readTextFileSync(log).trimEnd().split("\n");
  assert.equal(lines[0], "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  const rows = lines.slice(1).map((l) => l.split("\t")).sort((a, b) => Number(a[0]) - Number(b[0]));
  assert.deepEqual(rows.map((r) => [r[0], r[1], r[5], r[6], r[7]]), [["1", ":", "2", "0", "0"], [
    "2",
    ":",
    "2",
    "4",
    "0",
  ]]);
  assert.equal(rows[0][8], "echo 0; exit 0");
});

Deno.test("manager usage errors: one line with the reason and a pointer to --help, naming the flag", async () => {
  await using dir = await tempDir();
  for (
    const [args, reason] of [
      [["-j", "jobs.txt"], /-j\/--max-procs needs a whole number.*--jobs FILE/],
      [["--local", "two", "--jobs", "x"], /--local needs a whole number/],
      [["--local", "-1", "--jobs", "x"], /'--local' argument is ambiguous.*--local=-XYZ/],
      [["--halt", "sometimes", "echo", ":::", "a"], /--halt needs/],
      [["--shell", "bash", "echo", ":::", "a"], /--shell needs an absolute path/],
      [["--no-such-flag"], /no-such-flag/],
    ] as const
  ) {
    const run = await manager([...args], dir.path);
    assert.equal(run.code, 2, `${args}: ${run.stderr}`);
    assert.match(run.stderr, reason);
    assert.match(run.stderr, /Try 'manager --help'/);
    assert.ok(run.stderr.split("\n").length <= 3, `not the whole help: ${run.stderr}`);
  }
});

Deno.test("a template run with --port serves the same jobs to a separate runner", async () => {
  await using dir = await tempDir();
  await using m = EntryProcess.spawn("manager.ts", [
    "--port",
    "0",
    "-k",
    "echo",
    "{1}-{2}",
    ":::",
    "a",
    "b",
    ":::",
    "1",
    "2",
  ], {
    cwd: dir.path,
  });
  const port = Number((await m.waitFor(LISTENING))[1]);
  await using runner = startRunner(port, ["--workers", "2", "--name", "remote"]);
  const [ms, rs] = await Promise.all([m.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, m.stderr);
  assert.equal(m.stdout, "a-1\na-2\nb-1\nb-2\n");
});

Deno.test("runner -j N runs N jobs at once (-w N too); -j TOKEN is a usage error naming --join-file", async () => {
  await using dir = await tempDir();
  await using m = EntryProcess.spawn("manager.ts", ["--port", "0", "echo", "{%}", ":::", "a", "b", "c", "d"], {
    cwd: dir.path,
  });
  const port = Number((await m.waitFor(LISTENING))[1]);
  await using runner = startRunner(port, ["-j", "2", "--shell", "/bin/bash"]);
  const [ms, rs] = await Promise.all([m.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, m.stderr);
  assert.ok(m.stdout.trim().split("\n").every((s) => s === "1" || s === "2"), m.stdout);
  await using bad = startRunner(1, ["-j", "vico1:abc"]);
  assert.equal((await bad.exit()).code, 2);
  assert.match(bad.stderr, /-j\/--workers needs a whole number.*--join-file/);
  assert.match(bad.stderr, /Try 'runner --help'/);
  await using scheme = EntryProcess.spawn("runner.ts", ["-m", "http://head:7707"]);
  assert.equal((await scheme.exit()).code, 2);
  assert.match(scheme.stderr, /^runner: -m\/--manager needs HOST\[:PORT\] \(no scheme\), got "http:\/\/head:7707"\n/);
});

Deno.test("each job sees VICO_SEQ (its {#}) and VICO_SLOT, locally and on a separate runner", async () => {
  await using dir = await tempDir();
  const template = ["-k", 'echo "$VICO_SEQ {#} $VICO_SLOT"', ":::", "a", "b", "c"];
  const local = await manager(["-j", "2", ...template], dir.path);
  assert.equal(local.code, 0, local.stderr);
  const rows = local.stdout.trim().split("\n").map((l) => l.split(" "));
  assert.deepEqual(rows.map((r) => [r[0], r[1]]), [["1", "1"], ["2", "2"], ["3", "3"]]);
  assert.ok(rows.every((r) => r[2] === "1" || r[2] === "2"), local.stdout);
  await using m = EntryProcess.spawn("manager.ts", ["--port", "0", ...template], { cwd: dir.path });
  const port = Number((await m.waitFor(LISTENING))[1]);
  await using runner = startRunner(port, ["-j", "1"]);
  const [ms, rs] = await Promise.all([m.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, m.stderr);
  assert.equal(m.stdout, "1 1 1\n2 2 1\n3 3 1\n");
});

Deno.test("runner with no -j runs one job per core", async () => {
  await using dir = await tempDir();
  await using m = EntryProcess.spawn("manager.ts", ["--port", "0", "true", ":::", "a"], { cwd: dir.path });
  const port = Number((await m.waitFor(LISTENING))[1]);
  await using runner = startRunner(port, [], { env: { VICO_WORKERS: "" } });
  const [ms, rs] = await Promise.all([m.exit(), runner.exit()]);
  assert.equal(rs.code, 0, runner.stderr);
  assert.equal(ms.code, 0, m.stderr);
  assert.match(runner.stderr, new RegExp(`with ${navigator.hardwareConcurrency} worker\\(s\\)`));
});

Deno.test("manager --jobs - is an ad-hoc run too; an old ./vico-results results directory is refused with a reason", async () => {
  await using dir = await tempDir();
  const run = await manager(["--jobs", "-", "--local", "1"], dir.path, "echo one\necho two\n");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.split("\n").sort().join("\n"), "\none\ntwo");
  const [made] = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name);
  assert.match(made, /^\d{4}-\d\d-\d\d-1$/);
  await using old = await tempDir();
  await Deno.mkdir(join(old.path, "vico-results"));
  await Deno.writeTextFile(join(old.path, "vico-results", ".vico-results"), "1\n");
  const refused = await manager(["echo", ":::", "a"], old.path);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /vico-results is the results directory of an earlier standard-input run/);
});

Deno.test("manager --jobs - twice with two lists in one directory: each gets its own vico-results/<date>-<n>/, neither resumes the other", async () => {
  await using dir = await tempDir();
  const first = await manager(["--jobs", "-", "--local", "1"], dir.path, "echo one\necho two\n");
  assert.equal(first.code, 0, first.stderr);
  // The second list repeats a job of the first: it runs again, in a directory of its own.
  const second = await manager(["--jobs", "-", "--local", "1"], dir.path, "echo two\necho three\n");
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout.split("\n").sort().join("\n"), "\nthree\ntwo");
  assert.doesNotMatch(second.stderr, /settled by an earlier run/);
  const runs = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name).sort();
  assert.equal(runs.length, 2, runs.join(" "));
  const commands = runs.map((r) => readRecords(join(dir.path, "vico-results", r)).map((j) => j.command).sort());
  assert.deepEqual(commands.sort(), [["echo one", "echo two"], ["echo three", "echo two"]]);
});

Deno.test("manager -k --resume prints, in order, only the jobs it runs now", async () => {
  await using dir = await tempDir();
  // The run halts at b (-j 1: c and d never start); --resume runs c and d and prints them in order.
  const job = ["-k", "-j", "1", "test {} != b || exit 1; echo {}", ":::", "a", "b", "c", "d"];
  const first = await manager(["--halt", "now,fail=1", ...job], dir.path);
  assert.equal(first.code, 1, first.stderr);
  assert.equal(first.stdout, "a\n");
  const again = await manager(["--resume", ...job], dir.path);
  assert.equal(again.code, 1, again.stderr);
  assert.equal(again.stdout, "c\nd\n");
  assert.match(again.stderr, /of 4 in the list 3 succeeded, 1 failed/);
});

Deno.test("manager -r is refused (exit 2) and runs nothing: Parallel's -r read as a results directory would take the command", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(join(dir.path, "d"));
  // A file name that is shell code: run as a command (what `-r echo` did), it makes PWNED.
  await Deno.writeTextFile(join(dir.path, "d", "x; touch PWNED"), "");
  for (const args of [["-r", "echo"], ["-kr", "echo", ":::", "a"]]) {
    const run = await manager(args, dir.path, "d/x; touch PWNED\n");
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /-r is not a vico option: GNU Parallel's -r \(--no-run-if-empty\) is what vico always does/,
    );
    assert.equal(run.stdout, "");
  }
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["d"], "nothing ran, no directory made");
  // What Parallel's -r asks for is what a run does anyway: no input, no job.
  const empty = await manager(["echo", "{}"], dir.path, "");
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout, "");
});

Deno.test("manager COMMAND ::: A where vico-results/ cannot be made says why in one line (exit 3), no stack trace", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, "vico-results"), "a file, not a directory");
  // A file by that name here; and /proc, which Deno refuses to anything but --allow-all.
  for (const [cwd, reason] of [[dir.path, /File exists/], ["/proc", /Requires all access/]] as const) {
    const run = await manager(["echo", ":::", "a"], cwd);
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /^manager: cannot make a results directory in vico-results\/ here \(/m);
    assert.match(run.stderr, reason);
    assert.match(run.stderr, /give one with --results DIR/);
    assert.doesNotMatch(run.stderr, /Uncaught|at file:/, "no stack trace");
    assert.equal(run.stdout, "");
  }
});

/**
 * Runs `manager ARGS` through `sh -c SCRIPT`, where `"$0" "$@"` in SCRIPT is
 * the manager's command line (for a redirection or a word Deno cannot pass).
 */
async function managerInShell(script: string, args: string[], cwd: string) {
  const out = await new Deno.Command("sh", {
    args: ["-c", script, Deno.execPath(), ...RUN_FLAGS, ROOT + "manager.ts", ...args],
    cwd,
    env: { ...TEST_ENV },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

/** Runs `manager ARGS` in `cwd` with stdout a pipe whose reader goes away after the first chunk (`| head -1`). */
async function managerIntoHead(args: string[], cwd: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, ROOT + "manager.ts", ...args],
    cwd,
    env: { ...TEST_ENV },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  await reader.cancel(); // the read end closes: the next write to stdout is EPIPE
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, first: new TextDecoder().decode(first.value), stderr };
}

Deno.test("manager COMMAND ::: A | head -1: the closed pipe stops the run at once with 141, as SIGPIPE stops parallel", async () => {
  await using dir = await tempDir();
  const started = performance.now();
  const run = await managerIntoHead([
    "-k",
    "-j2",
    "echo",
    "{}",
    ":::",
    ...Array.from({ length: 1000 }, (_, i) => `${i + 1}`),
  ], dir.path);
  assert.equal(run.code, 141, run.stderr);
  assert.match(run.first, /^1\n/);
  assert.doesNotMatch(
    run.stderr,
    /Cannot print|ERROR|Uncaught/,
    "no error per job: one closed pipe, said by the status",
  );
  const [runDir] = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name);
  const recorded = readRecords(join(dir.path, "vico-results", runDir)).length;
  assert.ok(recorded < 1000, `the run stopped: ${recorded} of 1000 recorded`);
  assert.ok(performance.now() - started < 20_000);
  // --dry-run the same way: the commands stop with the pipe.
  const dry = await managerIntoHead([
    "--dry-run",
    "echo",
    "{}",
    ":::",
    ...Array.from({ length: 20000 }, (_, i) => `${i}`),
  ], dir.path);
  assert.equal(dry.code, 141, dry.stderr);
  assert.doesNotMatch(dry.stderr, /Uncaught/);
});

Deno.test({
  name: "manager COMMAND ::: A with stdout on a full disk: one error line, every job still run and recorded, exit 1",
  ignore: !canMountTinyDisk(),
  async fn() {
    await using dir = await tempDir();
    using disk = tinyDisk()!;
    // Deno.Command cannot take a file as stdout: the shell redirects it.
    const shell = await managerInShell(`"$0" "$@" > ${join(disk.path, "out")}`, [
      ...["-j2", "head -c 50000 /dev/zero; echo {}", ":::", "a", "b", "c", "d"],
    ], dir.path);
    const stderr = shell.stderr;
    assert.equal(shell.code, 1, stderr);
    assert.equal(
      stderr.match(/Cannot print the output of job \d+ on stdout: No space left on device/g)?.length,
      1,
      stderr,
    );
    assert.match(stderr, /4 succeeded, 0 failed/);
    const [runDir] = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name);
    assert.equal(readRecords(join(dir.path, "vico-results", runDir)).length, 4, "every job ran and is recorded");
    // --dry-run: one line, no stack.
    const dry = await managerInShell(`"$0" "$@" > ${join(disk.path, "dry")}`, [
      ...["--dry-run", "echo {}", ":::", ...Array.from({ length: 20000 }, (_, i) => `${i}`)],
    ], dir.path);
    const dryErr = dry.stderr;
    assert.equal(dry.code, 1, dryErr);
    assert.equal(dryErr.trim(), "manager: cannot print the commands on stdout: No space left on device (os error 28)");
  },
});

Deno.test({
  name: "manager --joblog on a full disk: the run goes on and is recorded whole; one error line, exit 1, no crash",
  ignore: !canMountTinyDisk(),
  async fn() {
    await using dir = await tempDir();
    using disk = tinyDisk()!;
    fill(join(disk.path, "filler"));
    const run = await manager(["--joblog", join(disk.path, "log"), "echo", "{}", ":::", "a", "b", "c"], dir.path);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout.split("\n").filter((l) => l !== "").sort().join(" "), "a b c", "outputs still printed");
    assert.equal(run.stderr.match(/Cannot write the joblog .*: No space left on device/g)?.length, 1, run.stderr);
    assert.doesNotMatch(run.stderr, /Uncaught/);
    const [runDir] = [...Deno.readDirSync(join(dir.path, "vico-results"))].map((e) => e.name);
    assert.equal(readRecords(join(dir.path, "vico-results", runDir)).length, 3);
  },
});

Deno.test("manager COMMAND ::: NAME where NAME is not UTF-8 is refused (exit 2) naming it, not run with a changed name", async () => {
  await using dir = await tempDir();
  // A Latin-1 file name (0xE9 for é): Deno hands the word to the program with U+FFFD in its place.
  const out = await managerInShell(`"$0" "$@" "caf$(printf '\\351').txt"`, ["wc", "-c", ":::"], dir.path);
  const stderr = out.stderr;
  assert.equal(out.code, 2, stderr);
  assert.match(stderr, /^manager: argument 4 \("caf\uFFFD\.txt"\) is not valid UTF-8: a job is UTF-8 text/m);
  assert.equal(out.stdout, "");
  assert.deepEqual([...Deno.readDirSync(dir.path)], [], "nothing ran, no results directory");
});

Deno.test("manager --jobs /dev/stdin is --jobs -; another /dev or /proc path (bash's <(cmd)) is refused (exit 2) saying what to do", async () => {
  await using dir = await tempDir();
  const stdin = await manager(["--jobs", "/dev/stdin", "--local", "1"], dir.path, "echo from-stdin\n");
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.equal(stdin.stdout, "from-stdin\n");
  const fd = await manager(["--jobs", "/dev/fd/63", "--local", "1"], dir.path);
  assert.equal(fd.code, 2, fd.stderr);
  assert.match(
    fd.stderr,
    /^manager: --jobs \/dev\/fd\/63: Deno's permissions refuse paths under \/dev and \/proc; give the list on standard input/m,
  );
});

Deno.test("manager --results '' is a usage error (exit 2), not the current directory", async () => {
  await using dir = await tempDir();
  const run = await manager(["--results", "", "echo", ":::", "a"], dir.path);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /^manager: --results needs a directory$/m);
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test("manager COMMAND ::: A stopped by SIGINT names the --resume=DIR that finishes it; that command runs only the rest", async () => {
  await using dir = await tempDir();
  const args = ["-j2", "sleep 0.4; echo {}", ":::", "1", "2", "3", "4", "5", "6"];
  await using first = EntryProcess.spawn("manager.ts", args, { cwd: dir.path });
  await first.waitFor(/^2$/m);
  first.kill("SIGINT");
  assert.equal((await first.exit()).code, 130, first.stderr);
  const hint = /run the same command with (--resume=vico-results\/[0-9-]+) to finish/.exec(first.stderr);
  assert.ok(hint, first.stderr);
  assert.match(first.stderr, new RegExp(`unsettled jobs will run when started again with ${hint[1]}`));
  const done = first.stdout.trim().split("\n");
  const rest = await manager([hint[1], ...args], dir.path);
  assert.equal(rest.code, 0, rest.stderr);
  const again = rest.stdout.trim().split("\n");
  assert.deepEqual([...done, ...again].sort(), ["1", "2", "3", "4", "5", "6"], "each job once, across both");
});
