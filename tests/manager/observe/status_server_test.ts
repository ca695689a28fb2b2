import assert from "node:assert/strict";
import { join } from "node:path";
import { JournalDamagedError } from "../../../core/errors.ts";
import { StatusServer } from "../../../manager/observe/status_server.ts";
import type { StatusSnapshot } from "../../../manager/observe/run_status.ts";
import { JOURNAL_FILE, ResultsStore } from "../../../manager/results/results_store.ts";
import { tempDir } from "../../helpers/journal.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const job = (line: number) =>
  JSON.stringify({
    type: "job",
    key: `k${line}`,
    line,
    command: `cmd ${line}`,
    status: 0,
    host: "h",
    start: new Date(T0 + line * 1000).toISOString(),
    end: new Date(T0 + line * 1000 + 500).toISOString(),
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
  }) + "\n";

Deno.test("StatusServer.timeline: reads only what the journal gained since, the line being written waits, damage names its line", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, JOURNAL_FILE);
  const server = StatusServer.start({
    hostname: "127.0.0.1",
    port: 0,
    snapshot: () => ({}) as StatusSnapshot,
    resultsDir: dir.path,
  });
  try {
    assert.equal((await server.timeline()).total, 0, "no journal yet");
    await Deno.writeTextFile(path, job(1) + job(2) + job(3).slice(0, 25));
    assert.equal((await server.timeline()).total, 2, "the torn line waits");
    await Deno.writeTextFile(path, job(3).slice(25) + job(4), { append: true });
    assert.equal((await server.timeline()).total, 4, "each job once");
    assert.equal((await server.timeline()).total, 4);
    await Deno.writeTextFile(path, "{oops\n" + job(6), { append: true });
    await assert.rejects(
      server.timeline(),
      (err) => err instanceof JournalDamagedError && err.code === "JOURNAL_DAMAGED" && err.line === 5,
      "the line counts from the journal's start, not from where the read began",
    );
  } finally {
    await server.close();
  }
});

Deno.test("StatusServer.timeline: a batch that failed to be written and was cut back is never shown, and the journal reads on after it", async () => {
  await using dir = await tempDir();
  const store = await ResultsStore.open(dir.path, { durable: false });
  const server = StatusServer.start({
    hostname: "127.0.0.1",
    port: 0,
    snapshot: () => ({}) as StatusSnapshot,
    resultsDir: dir.path,
    journalEnd: () => store.durableLength,
  });
  const original = Deno.FsFile.prototype.write;
  const fields = (line: number, command = "true") => {
    const at = new Date(T0 + line * 1000).toISOString();
    return { key: `k-${line}`, line, command, status: 0, host: "h", start: at, end: at, attempt: 1 };
  };
  try {
    await store.commit(fields(1), store.stageOutput());
    assert.equal((await server.timeline()).total, 1);
    // The next batch (two records) gets its first record out, then the disk
    // fills up; a page asks for the timeline in between.
    Deno.FsFile.prototype.write = async function (this: Deno.FsFile, p: Uint8Array) {
      Deno.FsFile.prototype.write = original;
      const first = p.indexOf(0x0a) + 1;
      await original.call(this, p.subarray(0, first));
      await server.timeline();
      throw new Deno.errors.WriteZero("No space left on device (simulated)");
    };
    const failed = [store.commit(fields(2), store.stageOutput()), store.commit(fields(3), store.stageOutput())];
    for (const f of failed) await assert.rejects(f, /No space/);
    // Later records, one long enough to span where the cut one ended.
    await store.commit(fields(4, "x".repeat(400)), store.stageOutput());
    await store.commit(fields(5), store.stageOutput());
    const timeline = await server.timeline();
    assert.deepEqual(timeline.jobs.map((j) => j.line), [1, 4, 5], "the cut record is not shown");
  } finally {
    Deno.FsFile.prototype.write = original;
    await server.close();
    await store.close();
  }
});
