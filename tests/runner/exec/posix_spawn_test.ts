import assert from "node:assert/strict";
import { join } from "node:path";
import { PosixSpawn, type SpawnedProcess } from "../../../runner/exec/posix_spawn.ts";
import { OutputLimitError, outputLimitNote } from "../../../runner/exec/output_limit.ts";
import {
  endProcessGroup,
  JOB_ID_VARIABLE,
  type JobRecord,
  type ProcessOutcome,
  runProcess,
  type RunProcessOptions,
  shellArgv,
  unsetInheritedVariables,
} from "../../../runner/exec/process_runner.ts";
import { ownProcessTest } from "../../helpers/own_process.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

function spawner(): PosixSpawn {
  const spawn = PosixSpawn.open();
  assert.ok(spawn !== undefined, "posix_spawn is expected to work on this test machine (Linux, glibc, --allow-ffi)");
  return spawn;
}

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "vico-spawn-test-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Spawns `sh -c command` with its output in a file: its wait status and output. */
async function sh(command: string, env: Record<string, string> = { PATH: "/usr/bin:/bin" }) {
  return await withDir(async (dir) => {
    const outputPath = join(dir, "out");
    const child = spawner().spawn({ argv: ["/bin/sh", "-c", command, "sh"], env, outputPath });
    assert.ok("pid" in child, "started");
    const status = await child.status;
    return { ...status, pid: child.pid, out: await Deno.readFile(outputPath) };
  });
}

Deno.test("PosixSpawn.spawn() reports the exit code or the signal of the process", async () => {
  assert.deepEqual((await sh("exit 0")).code, 0);
  assert.deepEqual((await sh("exit 3")).code, 3);
  assert.deepEqual((await sh("exit 255")).code, 255);
  const killed = await sh("kill -9 $$");
  assert.equal(killed.code, null);
  assert.equal(killed.signal, 9);
  assert.equal((await sh("kill -TERM $$")).signal, 15);
});

Deno.test("PosixSpawn.spawn() fails with libc's error for a program that does not exist", async () => {
  await withDir((dir) => {
    const failed = spawner().spawn({ argv: ["/no/such/program"], env: {}, outputPath: join(dir, "out") });
    assert.ok(!("pid" in failed));
    assert.equal(failed.errno, 2);
    assert.equal(failed.error, "No such file or directory");
    return Promise.resolve();
  });
});

Deno.test("PosixSpawn.spawn() starts the process in a session and process group of its own", async () => {
  const { out, pid } = await sh("ps -o pid=,pgid=,sid= -p $$");
  assert.deepEqual(text(out).trim().split(/\s+/).map(Number), [pid, pid, pid]);
});

Deno.test("PosixSpawn.groupRunning(): true while a member runs (stopped too) or when no member is seen; false for zombies only", async () => {
  await withDir(async (dir) => {
    const spawn = spawner();
    // The group's leader starts a member in the background and waits; the member is stopped.
    const child = spawn.spawn({
      argv: ["/bin/sh", "-c", "sleep 30 & kill -STOP $!; wait", "sh"],
      env: { PATH: "/usr/bin:/bin" },
      outputPath: join(dir, "out"),
    });
    assert.ok("pid" in child, "started");
    try {
      await new Promise((r) => setTimeout(r, 60)); // past the reuse of an earlier scan
      assert.equal(spawn.groupRunning(child.pid), true);
      assert.equal(spawn.groupRunning(2 ** 22 + 12345), true, "no member seen: nothing known, taken for running");
    } finally {
      spawn.kill(-child.pid, 9);
      await child.status;
    }
  });
  // Zombies only: a process that adopts orphans (a subreaper, as a container's init) and does not reap them yet.
  const module = new URL("../../../runner/exec/posix_spawn.ts", import.meta.url).href;
  const script = `
    import { PosixSpawn } from "${module}";
    const libc = Deno.dlopen("libc.so.6", { prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" } });
    if (libc.symbols.prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1n, 0n, 0n, 0n) !== 0) throw new Error("prctl");
    const spawn = PosixSpawn.open();
    const dir = await Deno.makeTempDir();
    const child = spawn.spawn({ argv: ["/bin/sh", "-c", "sleep 0.01 & exit 0"], env: { PATH: "/usr/bin:/bin" }, outputPath: dir + "/out" });
    await child.status;
    await new Promise((r) => setTimeout(r, 300)); // the orphan has ended: a zombie of this process, in the job's group
    console.log(JSON.stringify({ signalled: spawn.kill(-child.pid, 0), running: spawn.groupRunning(child.pid) }));
    await Deno.remove(dir, { recursive: true });`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--allow-ffi", "--allow-read", "--allow-write", script],
  }).output();
  assert.equal(out.code, 0, text(out.stderr));
  assert.deepEqual(JSON.parse(text(out.stdout)), { signalled: true, running: false });
});

Deno.test("endProcessGroup() leaves nothing running of a group that keeps forking and ignores SIGTERM", async () => {
  await withDir(async (dir) => {
    const spawn = spawner();
    // Each member forks a child and exits: a look at /proc may see the parent a zombie and miss the child.
    const hopper = `$SIG{TERM} = "IGNORE"; while (1) { exit 0 if fork; select(undef, undef, undef, 0.005) }`;
    const child = spawn.spawn({
      argv: ["perl", "-e", hopper],
      env: { PATH: "/usr/bin:/bin" },
      outputPath: join(dir, "out"),
    });
    assert.ok("pid" in child, "started");
    try {
      await new Promise((r) => setTimeout(r, 50));
      await endProcessGroup(child.pid, 1000);
      await child.status;
      // Looked at from outside (ps has the same race as any look at /proc: the most of ten looks).
      let live = 0;
      for (let i = 0; i < 10; i++) {
        const ps = await new Deno.Command("ps", { args: ["-e", "-o", "pgid=,stat="], stdout: "piped" }).output();
        const rows = text(ps.stdout).trim().split("\n").map((l) => l.trim().split(/\s+/));
        live = Math.max(live, rows.filter(([g, st]) => Number(g) === child.pid && !st.startsWith("Z")).length);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(live, 0, "nothing of the group runs once it is ended");
    } finally {
      spawn.kill(-child.pid, 9);
    }
  });
});

Deno.test("PosixSpawn.spawn() resets the signals Deno ignores and blocks (SIGPIPE): `yes | head -1` ends", async () => {
  const { out } = await sh("grep -E '^Sig(Ign|Blk):' /proc/self/status");
  const [blocked, ignored] = text(out).trim().split("\n").map((line) => BigInt(`0x${line.split(/\s+/)[1]}`));
  // Signals 1-31 (SIGPIPE is 13): none blocked, none ignored (32 and 33, glibc's own, stay as Deno has them, as with Deno.Command).
  assert.equal(blocked & 0x7fffffffn, 0n);
  assert.equal(ignored & 0x7fffffffn, 0n);
  const started = performance.now();
  const yes = await sh("yes | head -1; echo done");
  assert.equal(text(yes.out), "y\ndone\n");
  assert.ok(performance.now() - started < 5000);
});

Deno.test("PosixSpawn.spawn() merges stderr into stdout, stdin is /dev/null, the environment is exactly envp", async () => {
  const { out } = await sh("echo out; echo err >&2; cat; env | sort", { A: "1", B: "two words" });
  assert.equal(text(out), "out\nerr\nA=1\nB=two words\nPWD=" + Deno.cwd() + "\n");
});

Deno.test("PosixSpawn.spawn() runs in the working directory given", async () => {
  await withDir(async (dir) => {
    const outputPath = join(dir, "out");
    const child = spawner().spawn({ argv: ["/bin/pwd"], env: {}, outputPath, cwd: dir });
    assert.ok("pid" in child);
    assert.equal((await child.status).code, 0);
    assert.equal(await Deno.readTextFile(outputPath), `${await Deno.realPath(dir)}\n`);
  });
});

Deno.test("PosixSpawn.spawn() gated: the process reads one line once the gate opens, or sees the end", async () => {
  await withDir(async (dir) => {
    const gated = ["/bin/sh", "-c", "read -r _ || exit 125; echo ran"];
    const outputPath = join(dir, "out");
    const open = spawner().spawn({ argv: gated, env: {}, outputPath, gated: true }) as SpawnedProcess;
    open.gate!.open();
    assert.equal((await open.status).code, 0);
    assert.equal(await Deno.readTextFile(outputPath), "ran\n");
    const closed = spawner().spawn({ argv: gated, env: {}, outputPath, gated: true }) as SpawnedProcess;
    closed.gate!.close();
    assert.equal((await closed.status).code, 125);
    assert.equal(await Deno.readTextFile(outputPath), "");
  });
});

Deno.test("PosixSpawn.spawn() does not block the JavaScript thread while the process runs", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  try {
    await sh("sleep 0.5");
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks >= 20, `${ticks} ticks in 500 ms`);
});

Deno.test("PosixSpawn.spawn(): 40 children at once each get their own status, reaped on SIGCHLD; Deno.Command's children stay Deno's", async () => {
  await withDir(async (dir) => {
    const started = performance.now();
    const children = Array.from({ length: 40 }, (_, i) => {
      const child = spawner().spawn({
        argv: ["/bin/sh", "-c", `sleep 0.0${i % 10}; exit ${i}`],
        env: { PATH: "/usr/bin:/bin" },
        outputPath: join(dir, `out-${i}`),
      });
      assert.ok("pid" in child);
      return child;
    });
    // A child of Deno's own, ending among them, is not reaped from under it.
    const theirs = new Deno.Command("/bin/sh", { args: ["-c", "sleep 0.05; exit 7"] }).spawn();
    const statuses = await Promise.all(children.map((c) => c.status));
    assert.deepEqual(statuses.map((s) => s.code), Array.from({ length: 40 }, (_, i) => i));
    assert.equal((await theirs.status).code, 7);
    // Reaped on SIGCHLD, not on the slow poll alone: ten in a row take far less than ten polls.
    const inRow = performance.now();
    for (let i = 0; i < 10; i++) await sh("exit 0");
    assert.ok(performance.now() - inRow < 1_000, `${performance.now() - inRow} ms for ten`);
    assert.ok(performance.now() - started < 5_000);
  });
});

Deno.test("PosixSpawn.spawn() writes to a descriptor of the runner's, at its offset; the base environment under the job's", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "log");
    const fd = spawner().openOutput(path);
    try {
      const baseEnv = { A: "base", B: "base" };
      for (const b of ["one", "two"]) {
        const child = spawner().spawn({
          argv: ["/bin/sh", "-c", 'echo "$A $B"'],
          baseEnv,
          env: { B: b },
          outputFd: fd,
        }) as SpawnedProcess;
        assert.equal((await child.status).code, 0);
      }
      assert.equal(spawner().sizeOf(fd), "base one\nbase two\n".length);
    } finally {
      spawner().closeFd(fd);
    }
    assert.equal(await Deno.readTextFile(path), "base one\nbase two\n", "one offset, shared");
  });
});

// ---------------------------------------------------------------------------
// runProcess() with an output file, both ways
// ---------------------------------------------------------------------------

const VIAS = ["posix_spawn", "command"] as const;

async function runToFile(
  via: "posix_spawn" | "command",
  command: string,
  options: Omit<RunProcessOptions, "outputFile" | "via"> = {},
): Promise<ProcessOutcome & { out: Uint8Array }> {
  return await withDir(async (dir) => {
    const outputFile = join(dir, "out");
    const outcome = await runProcess(shellArgv(command), { ...options, outputFile, via });
    assert.equal(outcome.via, via);
    const out = await Deno.readFile(outputFile);
    assert.equal(outcome.outputBytes, out.length);
    return { ...outcome, out };
  });
}

for (const via of VIAS) {
  Deno.test(`runProcess() to a file keeps the output byte-exact, NUL and invalid UTF-8 included (${via})`, async () => {
    const { status, out } = await runToFile(via, "printf 'a\\000\\377\\303\\050\\n'; printf 'e\\000' >&2");
    assert.equal(status, 0);
    assert.deepEqual(out, new Uint8Array([0x61, 0, 0xff, 0xc3, 0x28, 0x0a, 0x65, 0]));
    const empty = await runToFile(via, "true");
    assert.equal(empty.outputBytes, 0);
    assert.equal(empty.out.length, 0);
  });

  Deno.test(`runProcess() to a file reports 128+N for a signal and 127 for a missing command (${via})`, async () => {
    const pipe = await runToFile(via, "kill -PIPE $$");
    assert.equal(pipe.status, 141);
    assert.equal(pipe.signal, "SIGPIPE");
    const missing = await runToFile(via, "no-such-command-vico");
    assert.equal(missing.status, 127);
    assert.match(text(missing.out), /^sh: 1: no-such-command-vico: not found\n$|^sh: line 1: /);
  });

  Deno.test(`runProcess() to a file gives the job ${JOB_ID_VARIABLE} and the runner's environment (${via})`, async () => {
    const { out } = await runToFile(via, `echo "$${JOB_ID_VARIABLE}"; echo "$HOME"`);
    const [id, home] = text(out).split("\n");
    assert.match(id, new RegExp(`^${Deno.pid}\\.`));
    assert.equal(home, Deno.env.get("HOME") ?? "");
  });

  Deno.test(`runProcess() to a file: yes | head -1 ends (SIGPIPE is not ignored in the job) (${via})`, async () => {
    const { status, out } = await runToFile(via, "yes | head -1", { timeoutMs: 10_000 });
    assert.equal(status, 0);
    assert.equal(text(out), "y\n");
  });

  Deno.test(`runProcess() to a file: over maxOutputBytes kills the group and throws (${via})`, async () => {
    // Fast, then slow: caught while it runs, not only at the end.
    const started = performance.now();
    await assert.rejects(
      runToFile(via, "head -c 100000 /dev/zero; sleep 30", { maxOutputBytes: 1000, killGraceMs: 300 }),
      (err: Error) => err instanceof RangeError && err.message === "Output exceeds the limit of 1000 bytes",
    );
    assert.ok(performance.now() - started < 5000);
    // At the very end: caught once it has ended.
    await assert.rejects(
      runToFile(via, "head -c 1001 /dev/zero", { maxOutputBytes: 1000 }),
      (err: Error) => err instanceof RangeError,
    );
    const exact = await runToFile(via, "head -c 1000 /dev/zero", { maxOutputBytes: 1000 });
    assert.equal(exact.outputBytes, 1000);
  });

  Deno.test(`runProcess() over maxOutputBytes keeps the first bytes, then the one note (${via})`, async () => {
    await withDir(async (dir) => {
      const outputFile = join(dir, "out");
      await assert.rejects(
        runProcess(shellArgv("printf 'abcdefghij%.0s' $(seq 100); sleep 30"), {
          outputFile,
          maxOutputBytes: 25,
          via,
          killGraceMs: 300,
        }),
        (err: Error) => err instanceof OutputLimitError && err.limit === 25,
      );
      assert.equal(await Deno.readTextFile(outputFile), "abcdefghijabcdefghijabcde\n" + outputLimitNote(25));
    });
  });

  Deno.test(`runProcess() to an open file writes after what it holds, under the limit of its size (${via})`, async () => {
    await withDir(async (dir) => {
      const path = join(dir, "log");
      using log = await Deno.open(path, { write: true, createNew: true });
      await log.write(new TextEncoder().encode("before\n"));
      const one = await runProcess(shellArgv("echo one; echo err >&2"), { outputFile: log, via, maxOutputBytes: 100 });
      assert.equal(one.via, via, "posix_spawn finds the file's descriptor");
      assert.equal(one.outputBytes, 15);
      await assert.rejects(
        runProcess(shellArgv("printf 0123456789"), { outputFile: log, via, maxOutputBytes: 20 }),
        OutputLimitError,
      );
      await log.write(new TextEncoder().encode("next\n"));
      assert.equal(await Deno.readTextFile(path), "before\none\nerr\n01234\n" + outputLimitNote(20) + "next\n");
    });
  });

  Deno.test(`runProcess() jobs inherit the runner's environment as unsetInheritedVariables() leaves it (${via})`, async () => {
    const name = `VICO_TEST_INHERITED_${via.toUpperCase()}`;
    Deno.env.set(name, "yes");
    unsetInheritedVariables(); // renews the snapshot: the new variable is in
    assert.equal(text((await runToFile(via, `echo "$${name}"`)).out), "yes\n");
    unsetInheritedVariables(name);
    assert.equal(Deno.env.get(name), undefined);
    assert.equal(text((await runToFile(via, `echo "\${${name}-unset}"`)).out), "unset\n");
  });

  Deno.test(`runProcess() to a file with a ledger: the job runs once recorded, not at all if not (${via})`, async () => {
    const records: JobRecord[] = [];
    const ran = await runToFile(via, "echo ran", {
      ledger: { started: (job) => void records.push(job), ended: () => {} },
    });
    assert.equal(ran.status, 0);
    assert.equal(text(ran.out), "ran\n");
    assert.equal(records.length, 1);
    const refused = await runToFile(via, "echo ran", {
      ledger: {
        started: () => {
          throw new Error("disk full");
        },
        ended: () => {},
      },
    });
    assert.equal(refused.status, 125);
    assert.equal(text(refused.out), "vico: the job was not run: cannot record it: disk full\n");
  });

  ownProcessTest(import.meta.url, `runProcess() to a file: 100 MB of output with bounded memory (${via})`, async () => {
    const before = Deno.memoryUsage().rss;
    const { status, outputBytes } = await withDir(async (dir) => {
      return await runProcess(shellArgv("head -c 100000000 /dev/zero"), { outputFile: join(dir, "out"), via });
    });
    const grown = Deno.memoryUsage().rss - before;
    assert.equal(status, 0);
    assert.equal(outputBytes, 100_000_000);
    assert.ok(grown < 50_000_000, `RSS grew by ${grown} bytes`);
  });
}

Deno.test({
  name: Deno.uid() === 0
    ? "runProcess() to a file with --user and no cgroups takes the Deno.Command path, which can change user"
    : "runProcess() to a file with --user (SKIPPED: needs root)",
  ignore: Deno.uid() !== 0,
  async fn() {
    await withDir(async (dir) => {
      const outputFile = join(dir, "out");
      const outcome = await runProcess(shellArgv("id -u; id -g"), { outputFile, runAs: { uid: 65534, gid: 65534 } });
      assert.equal(outcome.via, "command");
      assert.equal(outcome.status, 0);
      assert.equal(await Deno.readTextFile(outputFile), "65534\n65534\n");
      const plain = await runProcess(shellArgv("id -u"), { outputFile });
      assert.equal(plain.via, "posix_spawn");
    });
  },
});

Deno.test("PosixSpawn: a runner started with SIGCHLD ignored still learns each child's status", async () => {
  const module = new URL("../../../runner/exec/posix_spawn.ts", import.meta.url).href;
  const script = `
    import { PosixSpawn } from "${module}";
    const spawn = PosixSpawn.open();
    const codes = [];
    for (let i = 0; i < 5; i++) {
      const child = spawn.spawn({ argv: ["/bin/sh", "-c", "exit 3"], env: {}, outputPath: "/dev/null" });
      codes.push((await child.status).code);
    }
    console.log(JSON.stringify(codes));`;
  // The shell ignores SIGCHLD and the exec keeps it ignored: the kernel would reap the children unasked.
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", `trap '' CHLD; exec "$0" eval --allow-ffi --allow-read "$1"`, Deno.execPath(), script],
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [3, 3, 3, 3, 3]);
});
