import assert from "node:assert/strict";
import { JOBLOG_HEADER, joblogLine, JoblogWriter, LOCAL_HOST, parseJoblog } from "../../cli/joblog.ts";

/** A joblog `parallel --joblog` (20221122) wrote: exits 0 and 2, a kill -9, quoted arguments. */
const RECORDED = JOBLOG_HEADER +
  "1\t:\t1796164605.998\t     0.014\t0\t2\t0\t0\tsleep 0.0; echo 0; [ 0 = 9 ] && kill -9 $$; exit 0\n" +
  "2\t:\t1796164606.012\t     0.227\t0\t2\t2\t0\tsleep 0.2; echo 2; [ 2 = 9 ] && kill -9 $$; exit 2\n" +
  "3\t:\t1796164606.024\t     0.907\t0\t2\t0\t9\tsleep 0.9; echo 9; [ 9 = 9 ] && kill -9 $$; exit 9\n" +
  "4\t:\t1796164606.250\t     0.006\t0\t4\t2\t0\tsleep 0.'a b'; echo 'a b'; [ 'a b' = 9 ] && kill -9 $$; exit 'a b'\n";

function reformat(text: string): string {
  return JOBLOG_HEADER + parseJoblog(text).map(joblogLine).join("");
}

Deno.test("joblogLine: writes Parallel's joblog byte for byte (recorded)", () => {
  assert.equal(reformat(RECORDED), RECORDED);
  assert.deepEqual(parseJoblog(RECORDED)[2], {
    seq: 3,
    host: ":",
    startMs: 1796164606024,
    runtimeMs: 907,
    sendBytes: 0,
    receiveBytes: 2,
    exitval: 0,
    signal: 9,
    command: "sleep 0.9; echo 9; [ 9 = 9 ] && kill -9 $$; exit 9",
  });
});

Deno.test("joblogLine: writes what the installed parallel --joblog writes", async () => {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v parallel"], stdout: "null" }).output();
  if (!which.success) return;
  const dir = await Deno.makeTempDir({ prefix: "vico-joblog-" });
  try {
    const log = `${dir}/joblog`;
    await new Deno.Command("parallel", {
      args: [
        "--will-cite",
        "--joblog",
        log,
        "-k",
        "printf '%s' {}\n[ {#} = 3 ] && kill -9 $$; exit {#}",
        ":::",
        "a",
        "b\tc",
        "d",
        "ü ✓",
      ],
      env: { PARALLEL_SHELL: "/bin/sh" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    const text = await Deno.readTextFile(log);
    assert.equal(parseJoblog(text).length, 4);
    assert.equal(reformat(text), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("joblogLine: a signal puts 0 in Exitval, a newline in the command becomes NUL, a tab in the host a space", () => {
  const line = joblogLine({
    seq: 12,
    host: "node\t7",
    startMs: 1_700_000_000_123.4,
    runtimeMs: 12_345_678.9,
    sendBytes: 10,
    receiveBytes: 20,
    exitval: 137,
    signal: 9,
    command: "echo 'a\nb'",
  });
  assert.equal(line, "12\tnode 7\t1700000000.123\t 12345.679\t10\t20\t0\t9\techo 'a\0b'\n");
});

Deno.test("JoblogWriter: the header first, then entries in the order given, one write at a time", async () => {
  const writes: string[] = [];
  let busy = false;
  const log = new JoblogWriter(async (bytes) => {
    assert.equal(busy, false, "writes overlap");
    busy = true;
    await new Promise((resolve) => setTimeout(resolve, 1));
    writes.push(new TextDecoder().decode(bytes));
    busy = false;
  });
  const entry = (seq: number) => ({
    seq,
    host: LOCAL_HOST,
    startMs: 1000 * seq,
    runtimeMs: 5,
    sendBytes: 0,
    receiveBytes: seq,
    exitval: seq % 2,
    signal: 0,
    command: `job ${seq}`,
  });
  await Promise.all([3, 1, 2].map((seq) => log.entry(entry(seq))));
  await log.flushed();
  assert.deepEqual(writes, [JOBLOG_HEADER, ...[3, 1, 2].map((seq) => joblogLine(entry(seq)))]);
  assert.deepEqual(parseJoblog(writes.join("")).map((e) => e.seq), [3, 1, 2]);
});

Deno.test("JoblogWriter: a failed write rejects flushed() with it, entries never reject, and nothing is written after it", async () => {
  const written: string[] = [];
  let calls = 0;
  const log = new JoblogWriter((bytes) => {
    calls++;
    // The header goes out; the first entry meets a full disk.
    if (calls === 2) return Promise.reject(new Error("No space left on device (os error 28)"));
    written.push(new TextDecoder().decode(bytes));
    return Promise.resolve();
  });
  const entry = { seq: 1, host: ":", startMs: 0, runtimeMs: 0, sendBytes: 0, receiveBytes: 0, exitval: 0, signal: 0 };
  // Not awaited, as a caller that logs per job does: no unhandled rejection may come of it.
  void log.entry({ ...entry, command: "a" });
  await log.entry({ ...entry, seq: 2, command: "b" });
  await assert.rejects(log.flushed(), /No space left on device/);
  assert.deepEqual(written, [JOBLOG_HEADER], "no line after the hole");
  assert.equal(calls, 2);
});
