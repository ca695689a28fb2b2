import assert from "node:assert/strict";
import { JobExecutor } from "../../../runner/exec/job_executor.ts";
import { SpoolFiles } from "../../../runner/exec/output_spool.ts";
import { canMountTinyDisk, tinyDisk } from "../../helpers/tiny_disk.ts";

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
    "JobExecutor.run: a job whose spool disk fills is reported with what it wrote and its own status (it saw ENOSPC); the next job runs once there is room",
  ignore: !canMountTinyDisk(),
  async fn() {
    using disk = tinyDisk()!;
    const files = new SpoolFiles(disk.path);
    try {
      const executor = new JobExecutor({ files });
      const full = await executor.run({ command: "head -c 200000 /dev/zero", slot: 1, maxOutputBytes: 1_000_000 });
      if (Deno.env.get("VICO_SPAWN") === "command") {
        // The runner writes what the job's pipe brings: its own write fails, and the job fails with the reason.
        assert.equal(full.status, 125);
        assert.match(await text(full), /^vico runner: No space left on device.*; the job was killed\n$/);
      } else {
        // The job writes its output file itself: the full disk's ENOSPC is its own write's error.
        assert.notEqual(full.status, 0, "head saw its write fail");
        assert.ok(full.output.size > 0 && full.output.size < 200_000, `${full.output.size} bytes`);
        const out = await text(full);
        assert.equal(out.length, full.output.size, "what the file holds, no more");
        assert.match(out, /^\0+$/);
      }
      const next = await executor.run({ command: "echo next", slot: 1, maxOutputBytes: 1000 });
      assert.equal(next.status, 0);
      assert.equal(await text(next), "next\n");
    } finally {
      await files.clear();
    }
  },
});
