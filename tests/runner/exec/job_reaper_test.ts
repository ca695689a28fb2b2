import assert from "node:assert/strict";
import { join } from "node:path";
import { groupsStillRunning, processStartTime, takeOverState } from "../../../runner/exec/job_reaper.ts";
import { JOB_ID_VARIABLE, type JobRecord, runProcess, shellArgv } from "../../../runner/exec/process_runner.ts";
import { RunnerState } from "../../../runner/service/runner_state.ts";
import { parseMountInfo, procCgroupTexts, sh } from "../../../runner/exec/job_cgroup.ts";
import { tempDir } from "../../helpers/journal.ts";

/** Whether a process exists and is not a zombie (orphans may never be reaped where pid 1 is no init). */
async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", 'read -r s < "/proc/$0/stat" 2>/dev/null || exit 1; s=${s##*) }; [ "${s%% *}" != Z ]', String(pid)],
  }).output();
  return out.success;
}

/** A process group of its own, led by a `sleep`, with this environment. */
function group(env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command("setsid", { args: ["sleep", "283.1"], env, stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
}

Deno.test("runProcess() with a ledger records the job's group and id before it runs, and forgets them after", async () => {
  const seen: string[] = [];
  let record: JobRecord | undefined;
  const chunks: string[] = [];
  const outcome = await runProcess(shellArgv(`echo "$${JOB_ID_VARIABLE}"; read -r s < /proc/$$/stat; echo "$s"`), {
    stderrOnStdout: true,
    sink: (c) => Promise.resolve(void chunks.push(new TextDecoder().decode(c))),
    ledger: {
      started: (job) => {
        record = job;
        seen.push("started");
      },
      ended: (job) => {
        assert.deepEqual(job, record);
        seen.push("ended");
      },
    },
  });
  assert.equal(outcome.status, 0);
  assert.deepEqual(seen, ["started", "ended"]);
  const [id, stat] = chunks.join("").trim().split("\n");
  assert.equal(id, record!.id);
  assert.equal(Number(stat.replace(/^.*\) /, "").split(" ")[2]), record!.pgid, "the job runs in the recorded group");
});

Deno.test("runProcess() with a ledger that cannot record the job does not run it", async () => {
  await using dir = await tempDir();
  const mark = join(dir.path, "ran");
  let out = "";
  const outcome = await runProcess(shellArgv(`touch ${mark}`), {
    stderrOnStdout: true,
    sink: (c) => Promise.resolve(void (out += new TextDecoder().decode(c))),
    ledger: {
      started: () => {
        throw new Error("disk full");
      },
      ended: () => {},
    },
  });
  assert.equal(outcome.status, 125);
  assert.equal(out, "vico: the job was not run: cannot record it: disk full\n");
  assert.equal(await Deno.stat(mark).then(() => true, () => false), false);
});

Deno.test("takeOverState() ends the groups a dead runner life recorded, and leaves a recycled group id alone", async () => {
  await using dir = await tempDir();
  using state = await RunnerState.open(dir.path);
  const ours = group({ [JOB_ID_VARIABLE]: "1.old.1" });
  // A group that got a recorded id after the job's had gone: no process in it carries that job's id.
  const recycled = group({ [JOB_ID_VARIABLE]: "2.other.7" });
  const unmarked = group({});
  try {
    await new Promise((r) => setTimeout(r, 100));
    // A life whose runner is gone: pid 1 never has this start time.
    const old = await state.ledger("old", "1 0");
    old.started({ pgid: ours.pid, id: "1.old.1" });
    old.started({ pgid: recycled.pid, id: "1.old.2" });
    old.started({ pgid: unmarked.pid, id: "1.old.3" });
    assert.deepEqual(
      (await groupsStillRunning((await state.lives())[0].jobs)).map((j) => j.pgid),
      [ours.pid],
    );
    await takeOverState(state, 300);
    assert.equal((await ours.status).signal, "SIGTERM");
    assert.equal(await alive(recycled.pid), true, "a recycled group is left alone");
    assert.equal(await alive(unmarked.pid), true, "a group without the job's id is left alone");
    const lives = await state.lives();
    assert.equal(lives.length, 1, "the dead life is forgotten; this life's ledger is open");
    assert.equal(lives[0].owner, `${Deno.pid} ${await processStartTime(Deno.pid)}`);
  } finally {
    for (const child of [ours, recycled, unmarked]) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Gone.
      }
      await child.status;
    }
  }
});

Deno.test("takeOverState() leaves alone the jobs of a runner that still runs on the same directory", async () => {
  await using dir = await tempDir();
  using state = await RunnerState.open(dir.path);
  const job = group({ [JOB_ID_VARIABLE]: "x.live.1" });
  try {
    await new Promise((r) => setTimeout(r, 100));
    // This very process stands for the other runner.
    const other = await state.ledger("live", `${Deno.pid} ${await processStartTime(Deno.pid)}`);
    other.started({ pgid: job.pid, id: "x.live.1" });
    await takeOverState(state, 300);
    assert.equal(await alive(job.pid), true);
    assert.equal((await state.lives()).length, 2);
  } finally {
    job.kill("SIGKILL");
    await job.status;
  }
});

/** A fresh cgroup at the top of this machine's v2 tree, or undefined where none can be made (not root). */
async function topCgroup(): Promise<string | undefined> {
  const { mountinfo } = await procCgroupTexts();
  const mount = parseMountInfo(mountinfo).find((m) => m.fsType === "cgroup2" && m.root === "/");
  if (mount === undefined) return undefined;
  const path = join(mount.mountPoint, `vico-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
  return (await sh('mkdir "$0"', [path])).ok ? path : undefined;
}

const canMake = await (async () => {
  const probe = await topCgroup();
  if (probe !== undefined) await sh('rmdir "$0"', [probe]);
  return probe !== undefined;
})();

Deno.test({
  name: canMake
    ? "takeOverState() ends a recorded job cgroup leaf, whatever left the job's group, and removes it"
    : "takeOverState() with a recorded cgroup leaf (SKIPPED: no writable cgroup v2 tree here)",
  ignore: !canMake,
  async fn() {
    const top = await topCgroup();
    await using dir = await tempDir();
    using state = await RunnerState.open(dir.path);
    const leaf = join(top!, "vico-job-1-1");
    // Left the job's group, and carries no id: only the leaf still holds it.
    const escaped = new Deno.Command("setsid", {
      args: ["/bin/sh", "-c", 'mkdir "$0" && echo $$ > "$0/cgroup.procs" && exec sleep 283.2', leaf],
    }).spawn();
    try {
      for (let i = 0; i < 100 && !(await sh('grep -q . "$0/cgroup.procs"', [leaf])).ok; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const old = await state.ledger("old", "1 0");
      old.started({ pgid: (1 << 22) + 1, id: "1.old.1", cgroup: leaf });
      await takeOverState(state, 300);
      assert.equal((await escaped.status).signal, "SIGKILL");
      assert.equal((await sh('[ -d "$0" ]', [leaf])).ok, false, "the leaf is removed");
    } finally {
      try {
        escaped.kill("SIGKILL");
      } catch {
        // Gone.
      }
      await escaped.status;
      await sh('[ ! -d "$0" ] || rmdir "$0"; rmdir "$1"', [leaf, top!]);
    }
  },
});
