import assert from "node:assert/strict";
import { JobExecutor } from "../../../runner/exec/job_executor.ts";
import { SpoolFiles } from "../../../runner/exec/output_spool.ts";
import { canMountTinyDisk, fill, tinyDisk } from "../../helpers/tiny_disk.ts";

async function withExecutor(test: (executor: JobExecutor) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const files = new SpoolFiles(dir);
  try {
    await test(new JobExecutor({ files }));
  } finally {
    await files.clear();
    await Deno.remove(dir, { recursive: true });
  }
}

async function text(done: Awaited<ReturnType<JobExecutor["run"]>>): Promise<string> {
  let out = "";
  const decoder = new TextDecoder();
  await done.output.pipeTo((chunk) => Promise.resolve(void (out += decoder.decode(chunk, { stream: true }))));
  await done.output.dispose();
  return out + decoder.decode();
}

Deno.test("JobExecutor.run: a job sees VICO_SLOT and VICO_SEQ; stdout and stderr are one output", async () => {
  await withExecutor(async (executor) => {
    const done = await executor.run({
      command: 'echo "$VICO_SLOT $VICO_SEQ"; echo err >&2; exit 3',
      slot: 2,
      seq: 7,
      maxOutputBytes: 1000,
    });
    assert.equal(done.status, 3);
    assert.equal(await text(done), "2 7\nerr\n");
    assert.equal(done.stopSignal, false);
  });
});

Deno.test("JobExecutor.run: an output over the limit fails that job alone with 125 and a note", async () => {
  await withExecutor(async (executor) => {
    const done = await executor.run({ command: "head -c 5000 /dev/zero; sleep 5", slot: 1, maxOutputBytes: 100 });
    assert.equal(done.status, 125);
    assert.match(await text(done), /^vico runner: .*100.*; the job was killed\n$/);
  });
});

Deno.test("JobExecutor.run: a job dead of SIGTERM from outside is flagged stopSignal; one ended by its timeout is not", async () => {
  await withExecutor(async (executor) => {
    const killed = await executor.run({ command: "kill -TERM $$", slot: 1, maxOutputBytes: 100 });
    assert.equal(killed.status, 143);
    assert.equal(killed.stopSignal, true);
    await killed.output.dispose();
    const timed = await executor.run({ command: "sleep 10", slot: 1, maxOutputBytes: 100, timeoutMs: 100 });
    assert.equal(timed.timedOut, true);
    assert.equal(timed.endedByRunner, true);
    assert.equal(timed.stopSignal, false);
    await timed.output.dispose();
  });
});

Deno.test({
  name:
    "JobExecutor.run: a job whose spool disk fills fails with 125 and a note saying why, even one that exits 0 after its write failed; the next job runs once there is room",
  ignore: !canMountTinyDisk(),
  async fn() {
    using disk = tinyDisk()!;
    const files = new SpoolFiles(disk.path);
    try {
      const executor = new JobExecutor({ files });
      // head's own status shows the failed write; the second job hides it (exit 0), so only the runner can tell.
      for (const command of ["head -c 200000 /dev/zero", "head -c 200000 /dev/zero; echo done-marker; exit 0"]) {
        const full = await executor.run({ command, slot: 1, maxOutputBytes: 1_000_000 });
        assert.equal(full.status, 125, command);
        const note = await text(full);
        if (Deno.env.get("VICO_SPAWN") === "command") {
          // The runner writes what the job's pipe brings: its own write fails, and the job is killed.
          assert.match(note, /^vico runner: No space left on device.*; the job was killed\n$/);
        } else {
          // The job writes its output file itself: the runner finds the disk full once it has ended.
          assert.equal(
            note,
            `vico runner: the file system of the output spool (${disk.path}) was full when the job ended: ` +
              "its output may be cut short (free space there, or point TMPDIR elsewhere)\n",
          );
        }
      }
      const next = await executor.run({ command: "echo next", slot: 1, maxOutputBytes: 1000 });
      assert.equal(next.status, 0);
      assert.equal(await text(next), "next\n");
    } finally {
      await files.clear();
    }
  },
});

Deno.test({
  name:
    "JobExecutor.run: two at once: a job whose own small write went through, but whose spool disk another filled before it ended, fails with 125 too (its output may be cut: it cannot be told)",
  ignore: !canMountTinyDisk() || Deno.env.get("VICO_SPAWN") === "command",
  async fn() {
    using disk = tinyDisk()!;
    const files = new SpoolFiles(disk.path);
    try {
      const executor = new JobExecutor({ files });
      const marker = `${disk.path}/wrote`;
      // It writes its line, says so, and ends a moment later; meanwhile the disk fills from outside.
      const running = executor.run({ command: `echo small; : > ${marker}; sleep 0.3`, slot: 1, maxOutputBytes: 1000 });
      for (let i = 0; i < 200 && !(await Deno.lstat(marker).then(() => true, () => false)); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      fill(`${disk.path}/filler`);
      const done = await running;
      assert.equal(done.status, 125);
      assert.match(
        await text(done),
        /^vico runner: the file system of the output spool .* was full when the job ended/,
      );
      // Room again: the next job is recorded as it ran.
      await Deno.remove(`${disk.path}/filler`);
      const next = await executor.run({ command: "echo next", slot: 1, maxOutputBytes: 1000 });
      assert.equal(next.status, 0);
      assert.equal(await text(next), "next\n");
    } finally {
      await files.clear();
    }
  },
});
