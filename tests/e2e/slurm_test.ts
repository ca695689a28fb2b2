/**
 * `scripts/slurm/runners.sbatch` on a real, single-host Slurm cluster: the
 * test starts `munged`, `slurmctld` and `slurmd` in the foreground on
 * loopback with a throw-away configuration and key, submits the script with
 * `sbatch --wait` against a real manager, and checks that every job ran
 * inside the Slurm allocation and that the batch job ended with the run.
 *
 * Needs Debian's `slurm-wlm` (slurmctld, slurmd, slurm-client) and `munge`,
 * and root (slurmd launches steps as the submitting user); without them the
 * test is skipped and says so in its name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, freePort, ROOT, startManagerOn } from "../helpers/entry_process.ts";
import { readOutput, readRecords, tempDir } from "../helpers/journal.ts";

const dec = new TextDecoder();
const SCRIPT = join(ROOT, "scripts/slurm/runners.sbatch");

/** The first of `names` found in the usual program directories. */
function which(name: string): string | undefined {
  for (const dir of ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"]) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The runner command line `runners.sbatch` runs (VICO_RUNNER): this checkout's runner.ts under the binaries' permissions. */
const RUNNER = [Deno.execPath(), "run", "-q", "-P=vico", "--config", join(ROOT, "deno.json"), join(ROOT, "runner.ts")]
  .join(" ");

const PROGRAMS = ["munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol"];
const missing = PROGRAMS.filter((p) => which(p) === undefined);
const skipReason = missing.length > 0
  ? `${missing.join(", ")} not installed (Debian: apt-get install slurm-wlm munge)`
  : Deno.uid() !== 0
  ? "slurmd must run as root"
  : undefined;

/** A one-node Slurm cluster on loopback: munged, slurmctld and slurmd, in `dir`. */
class TestCluster implements AsyncDisposable {
  readonly env: Record<string, string>;
  readonly #daemons: EntryProcess[] = [];
  /** The first daemon that exited. */
  #exited: EntryProcess | undefined;
  /** The controller answered. */
  #up = false;

  private constructor(readonly dir: string) {
    this.env = { SLURM_CONF: join(dir, "slurm.conf") };
  }

  /** Starts the daemons and waits until the node is idle. */
  static async start(dir: string): Promise<TestCluster> {
    const cluster = new TestCluster(dir);
    try {
      await cluster.#start();
    } catch (err) {
      await cluster[Symbol.asyncDispose]();
      throw err;
    }
    return cluster;
  }

  async #start(): Promise<void> {
    const d = this.dir;
    for (const sub of ["munge", "state", "spool", "log"]) {
      await Deno.mkdir(join(d, sub), { recursive: true, mode: 0o755 });
    }
    await Deno.chmod(d, 0o755); // munged wants every directory above its socket searchable
    const key = join(d, "munge", "munge.key");
    await Deno.writeFile(key, crypto.getRandomValues(new Uint8Array(1024)), { mode: 0o600 });
    const socket = join(d, "munge", "socket");
    this.#daemons.push(EntryProcess.spawnProgram(which("munged")!, [
      ...["--foreground", "--force", `--socket=${socket}`, `--key-file=${key}`],
      ...[`--log-file=${join(d, "munge", "log")}`, `--pid-file=${join(d, "munge", "pid")}`],
      `--seed-file=${join(d, "munge", "seed")}`,
    ]));
    await this.#daemons[0].waitFor(/Created \d+ work threads/, 10_000);
    const conf = [
      "ClusterName=vicotest",
      "SlurmctldHost=localhost(127.0.0.1)",
      `SlurmctldPort=${freePort()}`,
      `SlurmdPort=${freePort()}`,
      "SlurmUser=root",
      "SlurmdUser=root",
      "AuthType=auth/munge",
      "CredType=cred/munge",
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(d, "state")}`,
      `SlurmdSpoolDir=${join(d, "spool")}`,
      `SlurmctldPidFile=${join(d, "slurmctld.pid")}`,
      `SlurmdPidFile=${join(d, "slurmd.pid")}`,
      `SlurmctldLogFile=${join(d, "log", "slurmctld.log")}`,
      `SlurmdLogFile=${join(d, "log", "slurmd.log")}`,
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "MpiDefault=none",
      "ReturnToService=2",
      "JobCompType=jobcomp/none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
      "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ];
    await Deno.writeTextFile(this.env.SLURM_CONF, conf.join("\n") + "\n");
    const f = ["-D", "-f", this.env.SLURM_CONF];
    this.#daemons.push(EntryProcess.spawnProgram(which("slurmctld")!, [...f, "-c"], { env: this.env }));
    this.#daemons.push(EntryProcess.spawnProgram(which("slurmd")!, [...f, "-N", "localhost"], { env: this.env }));
    for (const daemon of this.#daemons) daemon.child.status.then(() => (this.#exited ??= daemon));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const state = await this.run("sinfo", ["-h", "-N", "-o", "%T"]).catch(() => "");
      if (state.trim() === "idle") {
        this.#up = true;
        return;
      }
      if (this.#exited !== undefined) throw new Error(`A Slurm daemon exited at start-up: ${this.#exited.stderr}`);
      if (Date.now() > deadline) {
        throw new Error(`The Slurm node did not become idle (${state.trim()}); logs in ${d}/log`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Runs a Slurm client program against this cluster; its stdout, or a rejection with its stderr. */
  async run(program: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
    const out = await new Deno.Command(which(program)!, {
      args,
      cwd: options.cwd,
      env: { ...this.env, ...options.env },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`${program} ${args.join(" ")}: ${dec.decode(out.stderr)}`);
    return dec.decode(out.stdout);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Whatever a failed test left queued or running goes first.
    if (this.#up) await this.run("scancel", ["--full", "--user=root"]).catch(() => {});
    for (const daemon of this.#daemons.reverse()) {
      daemon.kill("SIGTERM");
      await daemon.exit(10_000).catch(() => daemon[Symbol.asyncDispose]());
    }
  }
}

Deno.test({
  name: skipReason === undefined
    ? "runners.sbatch: one runner per Slurm node, workers = its cores, the batch job ends with the run"
    : `runners.sbatch on a real Slurm (SKIPPED: ${skipReason})`,
  ignore: skipReason !== undefined,
  async fn() {
    await using dir = await tempDir();
    const started = performance.now();
    await using cluster = await TestCluster.start(join(dir.path, "slurm"));
    const startupMs = performance.now() - started;

    const jobs = Array.from(
      { length: 8 },
      (_, i) => `sleep 0.2; echo "job ${i} slurm_job=$SLURM_JOB_ID node=$SLURMD_NODENAME step=$SLURM_STEP_ID"`,
    );
    const { manager, port, results } = await startManagerOn(dir.path, jobs);
    await using _m = manager;

    const submitted = performance.now();
    const out = await cluster.run("sbatch", ["-N", "1", "--wait", "--parsable", "-o", "slurm-%j.out", SCRIPT], {
      cwd: dir.path,
      env: { VICO_RUNNER: RUNNER, VICO_MANAGER: `127.0.0.1:${port}`, VICO_ALLOW_ROOT: "1", NO_COLOR: "1" },
    });
    const batchMs = performance.now() - submitted;
    const slurmJob = out.trim().split(";")[0];
    assert.match(slurmJob, /^\d+$/, `sbatch --parsable printed ${out}`);
    const log = await Deno.readTextFile(join(dir.path, `slurm-${slurmJob}.out`));

    // sbatch --wait returned 0: the batch job ended, and it ended because the
    // runner was told there were no more jobs (and exited 0).
    assert.match(log, /with 2 worker\(s\)/, "workers = the node's cores");
    assert.match(log, /Manager has no more jobs; ran 8 job\(s\)/, log);
    const ms = await manager.exit();
    assert.equal(ms.code, 0, manager.stderr);
    const state = await cluster.run("scontrol", ["show", "job", slurmJob]);
    assert.match(state, /JobState=COMPLETED/);
    assert.match(state, /ExitCode=0:0/);

    const recs = readRecords(results);
    assert.equal(recs.length, 8);
    for (const r of recs) {
      assert.equal(r.status, 0);
      assert.match(
        dec.decode(readOutput(results, r)),
        new RegExp(`^job \\d slurm_job=${slurmJob} node=localhost step=0\\n$`),
        "the job ran inside the Slurm allocation, in the srun step",
      );
    }
    console.log(
      `  Slurm start-up (munged, slurmctld, slurmd, node idle): ${startupMs.toFixed(0)} ms; ` +
        `sbatch --wait of 8 jobs: ${batchMs.toFixed(0)} ms (the batch job's ${state.match(/RunTime=\S+/)?.[0]}; ` +
        "sbatch --wait polls)",
    );
  },
});

Deno.test({
  name: skipReason === undefined
    ? "runners.sbatch: SIGUSR1 to the batch shell drains the runners; running jobs finish and are reported"
    : `runners.sbatch drain on a real Slurm (SKIPPED: ${skipReason})`,
  ignore: skipReason !== undefined,
  async fn() {
    await using dir = await tempDir();
    await using cluster = await TestCluster.start(join(dir.path, "slurm"));
    const jobs = Array.from({ length: 6 }, (_, i) => `sleep 2; echo "done ${i} in $SLURM_JOB_ID"`);
    const { manager, port, results } = await startManagerOn(dir.path, jobs);
    await using _m = manager;
    const out = await cluster.run("sbatch", ["-N", "1", "--parsable", "-o", "slurm-%j.out", SCRIPT], {
      cwd: dir.path,
      env: { VICO_RUNNER: RUNNER, VICO_MANAGER: `127.0.0.1:${port}`, VICO_ALLOW_ROOT: "1", NO_COLOR: "1" },
    });
    const slurmJob = out.trim().split(";")[0];
    await manager.waitFor(/Runner \S+ joined/);
    await new Promise((r) => setTimeout(r, 500)); // the first two jobs are running
    await cluster.run("scancel", ["--batch", "--signal=USR1", slurmJob]);
    const deadline = Date.now() + 30_000;
    let state = "";
    while (!/JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT)/.test(state)) {
      assert.ok(Date.now() < deadline, `the batch job did not end after draining: ${state}`);
      await new Promise((r) => setTimeout(r, 250));
      state = await cluster.run("scontrol", ["show", "job", slurmJob]);
    }
    const log = await Deno.readTextFile(join(dir.path, `slurm-${slurmJob}.out`));
    assert.match(state, /JobState=COMPLETED/, log);
    assert.match(log, /SIGUSR1: draining/);
    assert.match(log, /SIGTERM: taking no new jobs/);
    assert.match(log, /Stopped; ran 2 job\(s\)/);
    const recs = readRecords(results);
    assert.equal(recs.length, 2, "the two running jobs are reported, no more were taken");
    for (const r of recs) {
      assert.equal(r.status, 0, "a drained job finishes: Slurm's signal did not reach it");
      assert.match(dec.decode(readOutput(results, r)), new RegExp(`^done \\d in ${slurmJob}\\n$`));
    }
    await assert.rejects(
      Deno.stat(join(Deno.env.get("TMPDIR") ?? "/tmp", `vico-runner-${slurmJob}-localhost.pid`)),
      "the pid file is removed",
    );
  },
});
