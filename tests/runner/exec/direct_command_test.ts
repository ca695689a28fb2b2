import assert from "node:assert/strict";
import { join } from "node:path";
import {
  directCommand,
  shellKeepsEnv,
  shellPwd,
  shellSignalLine,
  shIsDash,
} from "../../../runner/exec/direct_command.ts";
import { type ProcessOutcome, runProcess, shellArgv } from "../../../runner/exec/process_runner.ts";
import { PosixSpawn } from "../../../runner/exec/posix_spawn.ts";

Deno.test({
  name: "directCommand: plain words give their argv; anything a shell reads, a builtin or a keyword gives none",
  permissions: "none",
  fn() {
    assert.deepEqual(directCommand("sleep 0.05"), ["sleep", "0.05"]);
    assert.deepEqual(directCommand("  ./sim\t--seed  3 "), ["./sim", "--seed", "3"]);
    assert.deepEqual(directCommand("dd if=/dev/zero of=out.bin bs=1M count=1"), [
      "dd",
      "if=/dev/zero",
      "of=out.bin",
      "bs=1M",
      "count=1",
    ]);
    assert.deepEqual(directCommand("/usr/bin/env -u HOME x,y:z@w%v+u"), ["/usr/bin/env", "-u", "HOME", "x,y:z@w%v+u"]);
    for (
      const line of [
        "",
        "   ",
        "A=1 cmd", // an assignment
        "echo hi", // builtins
        "true",
        "cd /tmp",
        "exec sleep 1",
        ". ./env.sh",
        "[ -f x ]",
        "test -f x",
        "kill 1",
        "pwd",
        "printf x",
        "if",
        "for",
        "time sleep 1", // keywords
        "source x",
        "ls *.txt", // syntax
        "ls x?",
        "ls [ab]",
        "cat ~/x",
        "echo $HOME",
        "cmd 'a b'",
        'cmd "a"',
        "cmd a\\ b",
        "a; b",
        "a && b",
        "a | b",
        "a > f",
        "a < f",
        "a &",
        "(a)",
        "{ a; }",
        "a # comment",
        "cmd `x`",
        "! cmd",
        "a\nb",
        "cmd é", // bytes outside ASCII: left to the shell
      ]
    ) {
      assert.equal(directCommand(line), undefined, JSON.stringify(line));
    }
  },
});

Deno.test({
  name: "shellKeepsEnv/shellSignalLine: only shell names pass; SIGINT and SIGPIPE are not named, a core dump is",
  permissions: "none",
  fn() {
    assert.equal(shellKeepsEnv({ A: "1", _B2: "", PATH: "/bin" }), true);
    assert.equal(shellKeepsEnv({ "A-B": "1" }), false);
    assert.equal(shellKeepsEnv({ "1X": "1" }), false);
    assert.equal(shellKeepsEnv({ "C.D": "1" }), false);
    assert.equal(shellSignalLine(15, "Terminated", false), "Terminated\n");
    assert.equal(shellSignalLine(11, "Segmentation fault", true), "Segmentation fault (core dumped)\n");
    assert.equal(shellSignalLine(2, "Interrupt", false), "");
    assert.equal(shellSignalLine(13, "Broken pipe", false), "");
  },
});

Deno.test({
  name: "shellPwd: an inherited PWD naming the directory is kept (a symbolic link's path too); any other is replaced",
  permissions: { read: true, write: true },
  async fn() {
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "vico-pwd-" }));
    try {
      const real = join(dir, "real");
      await Deno.mkdir(real);
      await Deno.symlink(real, join(dir, "link"));
      assert.equal(shellPwd(join(dir, "link"), real), join(dir, "link"));
      assert.equal(shellPwd(real, real), real);
      assert.equal(shellPwd(dir, real), real, "another directory");
      assert.equal(shellPwd("real", real), real, "not absolute");
      assert.equal(shellPwd(undefined, real), real);
      assert.equal(shellPwd(join(dir, "gone"), real), real);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs a job line as a runner does (its shell's argv, output to a file), on one path; the outcome and output. */
async function runLine(
  line: string,
  via: "posix_spawn" | "command",
  extra: { timeoutMs?: number } = {},
): Promise<ProcessOutcome & { out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "vico-direct-" });
  try {
    const outputFile = join(dir, "out");
    const outcome = await runProcess(shellArgv(line), { outputFile, via, killGraceMs: 300, ...extra });
    return { ...outcome, out: await Deno.readTextFile(outputFile) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const direct = PosixSpawn.open() !== undefined && shIsDash();

/** A script file in a fresh directory whose path is plain words. */
async function script(body: string): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "vico-direct-script-" });
  const path = join(dir, "job");
  await Deno.writeTextFile(path, body, { mode: 0o755 });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test({
  name: "runProcess: a plain line runs its program without a shell (the runner is its parent)",
  ignore: !direct,
  async fn() {
    const { status, out } = await runLine("cat /proc/self/stat", "posix_spawn");
    assert.equal(status, 0);
    // Field 4 of /proc/self/stat, after the command name in parentheses, is the parent's pid.
    const ppid = Number(out.slice(out.lastIndexOf(")") + 2).split(" ")[1]);
    assert.equal(ppid, Deno.pid);
  },
});

Deno.test({
  name: "runProcess: without its shell a plain line gets what its shell gave it: environment, PWD, status, output",
  ignore: !direct,
  async fn() {
    const envOf = (out: string) => out.split("\n").filter((l) => l !== "" && !l.startsWith("VICO_JOB_ID=")).sort();
    const [bare, shell] = [await runLine("env", "posix_spawn"), await runLine("env", "command")];
    assert.equal(bare.status, 0);
    assert.deepEqual(envOf(bare.out), envOf(shell.out));
    assert.ok(envOf(bare.out).includes(`PWD=${shellPwd(Deno.env.get("PWD"), Deno.cwd())}`));

    await using noShebang = await script("echo from a script with no '#!' line\nexit 3\n");
    await using aborts = await script("#!/bin/sh\necho before\nkill -ABRT $$\n");
    await using interrupted = await script("#!/bin/sh\nkill -INT $$\n");
    await using terminated = await script("#!/bin/sh\nkill -TERM $$\n");
    for (
      const line of [
        "nosuch-program-vico-test --flag", // not found: the shell says so, 127
        noShebang.path, // the shell runs it as a script
        aborts.path, // killed by a signal: 128+N and its name, as the shell prints it
        interrupted.path, // SIGINT: 130, no name
        terminated.path,
        "ls /nonexistent-vico-dir", // the program's own failure
        "head -c 5 /dev/zero",
      ]
    ) {
      const [a, b] = [await runLine(line, "posix_spawn"), await runLine(line, "command")];
      assert.equal(a.status, b.status, line);
      assert.equal(a.out, b.out, line);
    }
    const aborted = await runLine(aborts.path, "posix_spawn");
    assert.equal(aborted.status, 134);
    assert.match(aborted.out, /^before\nAborted( \(core dumped\))?\n$/);
  },
});

Deno.test({
  name: "runProcess: a plain line ended for its time limit is 128+SIGTERM, as its shell was, even if it exits 0 on it",
  ignore: !direct,
  async fn() {
    // Busy, not sleeping: a child killed beside it would have its own shell print its name, on either path.
    await using trapper = await script("#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do :; done\n");
    for (const via of ["posix_spawn", "command"] as const) {
      const { status, timedOut, out } = await runLine(trapper.path, via, { timeoutMs: 300 });
      assert.equal(timedOut, true, via);
      assert.equal(status, 143, via);
      assert.equal(out, "", via);
    }
  },
});
