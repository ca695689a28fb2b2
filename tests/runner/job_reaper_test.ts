import assert from "node:assert/strict";
import { join } from "node:path";
import { groupsStillRunning, processStartTime, takeOverState } from "../../runner/job_reaper.ts";
import { JOB_ID_VARIABLE, type JobRecord, runProcess, shellArgv } from "../../runner/process_runner.ts";
import { RunnerState } from "../../runner/runner_state.ts";
import { tempDir } from "../helpers/journal.ts";

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
  const outcome = await runProcess(shellArgv(`touch ${mark}`), {
    stderrOnStdout: true,
    sink: () => Promise.resolve(),
    ledger: {
      started: () => {
        throw new Error("disk full");
      },
      ended: () => {},
    },
  });
  assert.equal(outcome.status, 125);
  assert.equal(await Deno.stat(mark).then(() => true, () => false), false);
});

Deno.test("takeOverState() ends the groups a dead runner life recorded, and leaves a recycled group id alone", async () => {
  await using dir = await tempDir();
  const state = await RunnerState.open(dir.path);
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
  const state = await RunnerState.open(dir.path);
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
