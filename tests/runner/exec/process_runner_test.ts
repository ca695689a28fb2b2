import assert from "node:assert/strict";
import { endsWithin } from "../../helpers/process_state.ts";
import { join } from "node:path";
import {
  type ProcessOutcome,
  runProcess,
  type RunProcessOptions,
  shellArgv,
} from "../../../runner/exec/process_runner.ts";
import { PosixSpawn } from "../../../runner/exec/posix_spawn.ts";
import { OutputLimitError, outputLimitNote } from "../../../runner/exec/output_limit.ts";

/**
 * Every test runs three ways: output to a sink (`Deno.Command`), and output
 * to a file through `posix_spawn` and through the `Deno.Command` fallback.
 */
type Mode = "sink" | "posix_spawn" | "command";
const MODES: Mode[] = ["sink", "posix_spawn", "command"];
if (PosixSpawn.open() === undefined) throw new Error("posix_spawn is expected to work on this test machine");

/** Runs argv in the mode: the outcome and the output's bytes. */
async function runIn(
  mode: Mode,
  argv: string[],
  options: Omit<RunProcessOptions, "sink">,
): Promise<ProcessOutcome & { out: Uint8Array }> {
  if (mode !== "sink") {
    const dir = await Deno.makeTempDir({ prefix: "vico-pr-test-" });
    try {
      const outputFile = join(dir, "out");
      const outcome = await runProcess(argv, { ...options, outputFile, via: mode });
      assert.equal(outcome.via, mode);
      const out = await Deno.readFile(outputFile);
      assert.equal(outcome.outputBytes, out.length);
      return { ...outcome, out };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const chunks: Uint8Array[] = [];
  const outcome = await runProcess(argv, {
    ...options,
    sink: (c) => {
      chunks.push(c.slice());
      return Promise.resolve();
    },
  });
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return { ...outcome, out };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** What `/bin/sh -c COMMAND sh` itself writes to stderr: the reference a job's shell must match. */
async function underShC(command: string): Promise<string> {
  const out = await new Deno.Command("/bin/sh", { args: ["-c", command, "sh"], stdout: "null", stderr: "piped" })
    .output();
  return text(out.stderr);
}

for (const mode of MODES) {
  const run = (command: string, signal?: AbortSignal) => runIn(mode, shellArgv(command), { signal, killGraceMs: 300 });

  Deno.test(`runProcess() merges stdout and stderr in the order the job wrote them (${mode})`, async () => {
    for (let i = 0; i < 20; i++) {
      const { status, out } = await run("for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; done");
      assert.equal(status, 0);
      assert.equal(text(out), "o1\ne1\no2\ne2\no3\ne3\no4\ne4\no5\ne5\n");
    }
  });

  Deno.test(`runProcess() reports exit codes, 128+N for signals and 127 for a missing command (${mode})`, async () => {
    assert.equal((await run("exit 3")).status, 3);
    assert.equal((await run("kill -9 $$")).status, 137);
    assert.equal((await run("kill -TERM $$")).status, 143);
    const missing = await run("no-such-command-vico");
    assert.equal(missing.status, 127);
    assert.match(text(missing.out), /not found/);
    const direct = await runIn(mode, ["/no/such/program"], {});
    assert.equal(direct.status, 127);
    assert.match(text(direct.out), /\/no\/such\/program: No such file or directory/);
  });

  Deno.test(`runProcess() passes binary output through untouched (${mode})`, async () => {
    const { out } = await run("printf '\\000\\377\\303\\050x'");
    assert.deepEqual(out, new Uint8Array([0, 0xff, 0xc3, 0x28, 0x78]));
  });

  Deno.test(`runProcess() abort kills the whole process group (${mode})`, async () => {
    const marker = await Deno.makeTempFile();
    const ctl = new AbortController();
    const started = performance.now();
    const p = run(`(sleep 30; echo late > ${marker}) & sleep 30`, ctl.signal);
    await new Promise((r) => setTimeout(r, 200));
    ctl.abort();
    const { status } = await p;
    assert.equal(status, 143);
    assert.ok(performance.now() - started < 5000);
    await new Promise((r) => setTimeout(r, 200));
    const ps = new TextDecoder().decode((await new Deno.Command("ps", { args: ["-eo", "args"] }).output()).stdout);
    assert.ok(!ps.includes(`echo late > ${marker}`), "background child of the job was killed too");
    await Deno.remove(marker);
  });

  Deno.test(`runProcess() escalates to SIGKILL when SIGTERM is ignored (${mode})`, async () => {
    const ctl = new AbortController();
    const p = run("trap '' TERM; sleep 30", ctl.signal);
    await new Promise((r) => setTimeout(r, 200));
    ctl.abort();
    const { status } = await p;
    assert.equal(status, 137);
  });

  Deno.test(`shellArgv() runs the job's command as line 1 of its shell, named sh (${mode})`, async () => {
    const missing = await run("nosuchcmd-vico");
    assert.equal(missing.status, 127);
    assert.equal(text(missing.out), await underShC("nosuchcmd-vico"));
    assert.match(text(missing.out), /^sh: 1: nosuchcmd-vico: not found\n$|^sh: line 1: /);
    const second = await run("true\nnosuchcmd-vico");
    assert.equal(text(second.out), await underShC("true\nnosuchcmd-vico"));
    assert.equal(text((await run("echo $0")).out), "sh\n");
    const syntax = await run("echo a; if");
    assert.equal(syntax.status, 2);
    assert.equal(text(syntax.out), await underShC("echo a; if"), "a syntax error is the job's output too");
    assert.equal(text((await run('echo "$#:$*"')).out), "0:\n");
  });

  const runWith = async (command: string, options: { timeoutMs?: number; killGraceMs?: number }) => {
    const started = performance.now();
    const outcome = await runIn(mode, shellArgv(command), { stderrOnStdout: true, ...options });
    return { ...outcome, out: text(outcome.out), ms: performance.now() - started };
  };

  Deno.test(`runProcess() ends what the job left in its process group when its main process ends (${mode})`, async () => {
    const { status, out } = await runWith(
      "sleep 300 >/dev/null 2>&1 & echo $!; (trap '' TERM; sleep 300) >/dev/null 2>&1 & echo $!",
      {
        killGraceMs: 300,
      },
    );
    assert.equal(status, 0);
    const pids = out.trim().split("\n").map(Number);
    assert.equal(pids.length, 2);
    for (const pid of pids) assert.ok(await endsWithin(pid), `leftover ${pid} is gone with its job`);
  });

  Deno.test(`runProcess() reports the job when its main process ends, whoever else holds its output (${mode})`, async () => {
    // A leftover in the group holding stdout is ended; one that left the group is no longer waited for.
    const { status, out, ms } = await runWith("sleep 30 & setsid sleep 30 & echo $!", { killGraceMs: 300 });
    const escaped = Number(out.trim());
    try {
      assert.equal(status, 0);
      assert.ok(ms < 5000, `reported after ${ms} ms`);
    } finally {
      if (escaped > 1) Deno.kill(escaped, "SIGKILL");
    }
  });

  Deno.test(`runProcess() timeout ends the job even when a process that left its group holds its output (${mode})`, async () => {
    const { status, timedOut, out, ms } = await runWith("setsid sleep 30 & echo $!; sleep 30", {
      timeoutMs: 1000,
      killGraceMs: 300,
    });
    const escaped = Number(out.trim());
    try {
      assert.equal(timedOut, true);
      assert.equal(status, 143);
      assert.ok(ms >= 1000 && ms < 4000, `reported after ${ms} ms`);
    } finally {
      if (escaped > 1) Deno.kill(escaped, "SIGKILL");
    }
  });

  Deno.test(`runProcess() timeout ends the whole process group (${mode})`, async () => {
    const marker = await Deno.makeTempFile();
    try {
      const { status, timedOut } = await runIn(mode, shellArgv(`(sleep 30; echo late > ${marker}) & sleep 30`), {
        timeoutMs: 300,
        killGraceMs: 300,
      });
      assert.equal(status, 143);
      assert.equal(timedOut, true);
      const ps = new TextDecoder().decode((await new Deno.Command("ps", { args: ["-eo", "args"] }).output()).stdout);
      assert.ok(!ps.includes(`echo late > ${marker}`), "background child of the job was killed too");
    } finally {
      await Deno.remove(marker);
    }
  });

  Deno.test(`runProcess() over maxOutputBytes: the group is killed, the first bytes kept, then the note (${mode})`, async () => {
    const marker = await Deno.makeTempFile();
    try {
      await assert.rejects(
        runIn(mode, shellArgv(`(sleep 30; echo late > ${marker}) & head -c 5000 /dev/zero; sleep 30`), {
          maxOutputBytes: 1000,
          killGraceMs: 300,
        }),
        (err: Error) => err instanceof OutputLimitError && err.message === "Output exceeds the limit of 1000 bytes",
      );
      const ps = new TextDecoder().decode((await new Deno.Command("ps", { args: ["-eo", "args"] }).output()).stdout);
      assert.ok(!ps.includes(`echo late > ${marker}`), "background child of the job was killed too");
      const chunks: Uint8Array[] = [];
      await assert.rejects(
        runProcess(shellArgv("printf 0123456789"), {
          maxOutputBytes: 4,
          sink: (c) => Promise.resolve(void chunks.push(c.slice())),
        }),
        OutputLimitError,
      );
      assert.equal(chunks.map(text).join(""), "0123\n" + outputLimitNote(4), "a sink gets the same");
    } finally {
      await Deno.remove(marker);
    }
  });
}
