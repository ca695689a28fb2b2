/**
 * Adversarial tests: signals, exit statuses and the end of a job's process
 * group, both spawn paths, real processes.
 */

import assert from "node:assert/strict";
import { shellArgv } from "../../../runner/exec/process_runner.ts";
import { endsWithin, killPids, runToFile, stateOf, text, VIAS, withDir } from "./spawn_attack_helpers.ts";
import { join } from "node:path";

for (const via of VIAS) {
  Deno.test(`attack: a job dead of SIGKILL, SIGSEGV, SIGABRT, SIGSYS is 128+N, named the same on both paths (${via})`, async () => {
    for (const [name, n] of [["KILL", 9], ["SEGV", 11], ["ABRT", 6], ["BUS", 7], ["SYS", 31]] as const) {
      const o = await runToFile(via, shellArgv(`kill -${name} $$`));
      assert.equal(o.status, 128 + n, `SIG${name}`);
      // posix_spawn names only the signals of its own table (SIGSYS is missing): Deno.Command names it.
      assert.equal(o.signal, `SIG${name}`, `SIG${name}'s name in the outcome`);
    }
  });

  Deno.test(`attack: a job dead of a real-time signal is 128+N like any other, and its group is ended (${via})`, async () => {
    // Expected: status 128+34 = 162 (and 128+64 = 192), the job's leftover `sleep` ended with it.
    // Through Deno.Command `await child.status` throws "TypeError: Invalid signal: 34" (Deno cannot name
    // the signal): runProcess() rejects before it ends the group (the leftover runs on) and before it
    // cancels its pipe readers (a descriptor leaks per job).
    await withDir(async (dir) => {
      const pidFile = join(dir, "bg");
      const leftovers: number[] = [];
      const problems: string[] = [];
      try {
        for (const n of [34, 64]) {
          const o = await runToFile(via, shellArgv(`sleep 30 & echo $! > ${pidFile}; sleep 0.05; kill -${n} $$`), {
            killGraceMs: 300,
          }).catch((err) => ({ status: `threw ${err}` }));
          const leftover = Number(await Deno.readTextFile(pidFile));
          leftovers.push(leftover);
          if (o.status !== 128 + n) problems.push(`signal ${n}: status ${o.status}, expected ${128 + n}`);
          if (!await endsWithin(leftover)) problems.push(`signal ${n}: the job's leftover ${leftover} still runs`);
        }
        assert.deepEqual(problems, []);
      } finally {
        killPids(leftovers);
      }
    });
  });

  Deno.test(`attack: jobs dead of a real-time signal leak no descriptor (${via})`, async () => {
    // Caught failing through Deno.Command: the job's pipe stayed open while the leftover that held it ran (the
    // readers were never cancelled: runDirect() threw at \`await child.status\`). Counted in a process of its
    // own: the suite's other test files share this one's descriptors.
    const module = new URL("../../../runner/exec/process_runner.ts", import.meta.url).href;
    const script = `
    import { runProcess, shellArgv } from "${module}";
    const dir = await Deno.makeTempDir();
    const fds = async () => Number(new TextDecoder().decode((await new Deno.Command("/bin/sh", {
      args: ["-c", "ls /proc/" + Deno.pid + "/fd | wc -l"] }).output()).stdout).trim());
    const leftovers = [];
    const job = async () => {
      await runProcess(shellArgv("sleep 30 & echo $! > " + dir + "/bg; sleep 0.02; kill -40 $$"),
        { outputFile: dir + "/out", via: "${via}", killGraceMs: 100 }).catch(() => {});
      leftovers.push(Number(await Deno.readTextFile(dir + "/bg")));
    };
    await job();
    const before = await fds();
    for (let i = 0; i < 20; i++) await job();
    let after = await fds();
    for (const until = performance.now() + 3000; after - before > 3 && performance.now() < until;) {
      await new Promise((r) => setTimeout(r, 100));
      after = await fds();
    }
    for (const pid of leftovers) { try { Deno.kill(pid, "SIGKILL"); } catch { /* gone */ } }
    await Deno.remove(dir, { recursive: true });
    console.log(JSON.stringify({ before, after }));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--allow-ffi", "--allow-read", "--allow-write", "--allow-run", "--allow-env", script],
    }).output();
    assert.equal(out.code, 0, text(out.stderr));
    const { before, after } = JSON.parse(text(out.stdout)) as { before: number; after: number };
    assert.ok(after - before <= 3, `open descriptors: ${before} before, ${after} after 20 jobs`);
  });

  Deno.test(`attack: yes | head -1, and a job writing to a closed pipe, end normally (SIGPIPE default in the job) (${via})`, async () => {
    const o = await runToFile(via, shellArgv("yes | head -1; yes | (exec 0<&-; sleep 0.1); echo rc=$?"), {
      timeoutMs: 5000,
    });
    assert.equal(o.status, 0);
    assert.equal(text(o.out), "y\nrc=0\n");
    assert.ok(o.ms < 2000, `${o.ms} ms`);
  });

  Deno.test(`attack: a non-executable program (a file without x, a directory) is 126 on both paths, as a shell says (${via})`, async () => {
    // Caught differing: posix_spawn gave 127 for any program that cannot start, while through Deno.Command the
    // job is exec'd by setsid(1), which exits 126 ("failed to execute ...: Permission denied"), as shells do.
    await withDir(async (dir) => {
      const path = join(dir, "prog");
      await Deno.writeTextFile(path, "#!/bin/sh\necho hi\n", { mode: 0o644 });
      const o = await runToFile(via, [path]);
      assert.equal(o.status, 126, text(o.out));
      const directory = await runToFile(via, [dir]);
      assert.equal(directory.status, 126, text(directory.out));
      const missing = await runToFile(via, [join(dir, "missing")]);
      assert.equal(missing.status, 127, text(missing.out));
    });
  });

  for (const how of ["timeout", "abort"] as const) {
    Deno.test(`attack: ${how} of a job that ignores SIGTERM: SIGKILL after the grace, grandchildren and a stopped child too (${via})`, async () => {
      await withDir(async (dir) => {
        const pids = join(dir, "pids");
        const ctl = new AbortController();
        // A grandchild in a subshell ignoring TERM, a stopped one, and the main shell ignoring TERM.
        const command = `trap '' TERM; (trap '' TERM; sleep 30 & echo $! >> ${pids}; sleep 30) & echo $! >> ${pids}; ` +
          `sleep 30 & p=$!; kill -STOP $p; echo $p >> ${pids}; sleep 30`;
        const started = performance.now();
        const run = runToFile(via, shellArgv(command), {
          killGraceMs: 500,
          ...(how === "timeout" ? { timeoutMs: 300 } : { signal: ctl.signal }),
        });
        if (how === "abort") setTimeout(() => ctl.abort(), 300);
        const o = await run;
        const ms = performance.now() - started;
        const left = (await Deno.readTextFile(pids)).trim().split("\n").map(Number);
        try {
          assert.equal(o.status, 137, "SIGKILL after the grace");
          if (how === "timeout") assert.equal(o.timedOut, true);
          assert.ok(ms >= 750 && ms < 3000, `reported after ${ms} ms`);
          assert.equal(left.length, 3);
          for (const pid of left) assert.ok(await endsWithin(pid), `${pid} (${await stateOf(pid)}) ended`);
        } finally {
          killPids(left);
        }
      });
    });
  }
}

Deno.test({
  name:
    "attack: a job that leaves a short-lived background child is reported at once, not after the kill grace, though orphans are reaped late",
  fn: async () => {
    // The runner as PID 1 of a container (or any subreaper) that does not reap orphans of its jobs: the job's
    // background child, ended at the job's end, stays a zombie in the job's process group. kill(-pgid) still
    // succeeds on a group of zombies, so groupEnder (runner/exec/process_runner.ts) takes the group for alive and
    // waits the whole grace before it reports the job (and sends a useless SIGKILL). Expected: reported as soon
    // as the group's processes are dead (well under the 3 s grace); zombies are not running processes.
    // (This machine's PID 1 reaps orphans only every ~2 s, with the same effect.)
    const module = new URL("../../../runner/exec/process_runner.ts", import.meta.url).href;
    const script = `
    import { runProcess, shellArgv } from "${module}";
    const libc = Deno.dlopen("libc.so.6", { prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" } });
    if (libc.symbols.prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1n, 0n, 0n, 0n) !== 0) throw new Error("prctl");
    const dir = await Deno.makeTempDir();
    const times = {};
    for (const via of ["posix_spawn", "command"]) {
      const started = performance.now();
      const o = await runProcess(shellArgv("sleep 0.01 & echo hi"), { outputFile: dir + "/out", via, killGraceMs: 3000 });
      times[via] = [o.status, Math.round(performance.now() - started)];
    }
    await Deno.remove(dir, { recursive: true });
    console.log(JSON.stringify(times));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--allow-ffi", "--allow-read", "--allow-write", "--allow-run", "--allow-env", script],
    }).output();
    assert.equal(out.code, 0, text(out.stderr));
    const times = JSON.parse(text(out.stdout)) as Record<string, [number, number]>;
    for (const [via, [status, ms]] of Object.entries(times)) {
      assert.equal(status, 0);
      assert.ok(ms < 1000, `${via}: reported after ${ms} ms (grace 3000 ms)`);
    }
  },
});
