import assert from "node:assert/strict";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { JournalDamagedError, VicoError } from "../../../core/errors.ts";
import {
  DIRECT_FROM_BYTES,
  firstRunSource,
  type JobRecord,
  JOURNAL_FILE,
  ResultsStore,
} from "../../../manager/results/results_store.ts";
import { DirectAppender, MAX_DIRECT_APPENDERS } from "../../../io/direct_appender.ts";
import { verifyResults } from "../../../manager/results/verify.ts";
import { writeBigJournal } from "../../helpers/journal.ts";
import { ownProcessTest } from "../../helpers/own_process.ts";

const enc = new TextEncoder();
const fields = (key: string) => ({
  key,
  line: 1,
  command: "echo hi",
  status: 0,
  host: "h",
  start: new Date().toISOString(),
  end: new Date().toISOString(),
  attempt: 1,
});

async function records(dir: string): Promise<JobRecord[]> {
  const text = await Deno.readTextFile(join(dir, JOURNAL_FILE));
  return text.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("ResultsStore.commit() stores output byte for byte and its SHA-256 in one record", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    const out = store.stageOutput();
    const bytes = new Uint8Array([0, 255, 10, 0xc3, 0x28]);
    await out.write(bytes.subarray(0, 2));
    await out.write(bytes.subarray(2));
    const rec = await store.commit(fields("k-1"), out);
    const empty = await store.commit(fields("k-2"), store.stageOutput());
    await store.close();
    assert.deepEqual(await Deno.readFile(join(dir, rec.output!)), bytes);
    assert.equal(rec.sha256, createHash("sha256").update(bytes).digest("hex"));
    assert.equal(empty.output, null);
    assert.equal(empty.size, 0);
    assert.deepEqual((await records(dir)).map((r) => r.key), ["k-1", "k-2"]);
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "nothing left under temporary names");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StagedOutput takes a big output while it comes in (past two 32 MiB flushes, or written directly): committed byte for byte, a discarded one leaves nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    const chunk = new Uint8Array(1 << 20);
    const stage = async (mib: number) => {
      const out = store.stageOutput();
      const hash = createHash("sha256");
      // The caller reuses its buffer (as the reader does): each chunk differs.
      for (let i = 0; i < mib; i++) {
        chunk.fill(i & 0xff);
        chunk[0] = 0;
        chunk[1] = 0xff;
        hash.update(chunk);
        await out.write(chunk);
      }
      return { out, sha256: hash.digest("hex") };
    };
    const big = await stage(80); // past two background flushes of 32 MiB
    const rec = await store.commit(fields("k-1"), big.out);
    assert.equal(rec.size, 80 << 20);
    assert.equal(rec.sha256, big.sha256);
    // Read back through one buffer: this test shares its process's memory with the bounded-memory tests beside it.
    const back = createHash("sha256");
    using file = await Deno.open(join(dir, rec.output!));
    for (let n = await file.read(chunk); n !== null; n = await file.read(chunk)) back.update(chunk.subarray(0, n));
    assert.equal(back.digest("hex"), rec.sha256);
    await (await stage(40)).out.discard();
    await store.close();
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "nothing left under temporary names");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.commit(): a patient record waits the commit window for company; one that is not ends the wait", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir, { commitWindowMs: 400 });
    const since = (t0: number) => performance.now() - t0;
    // Alone and patient: durable once the window has passed.
    let t0 = performance.now();
    await store.commit(fields("k-1"), undefined, [], { patient: true });
    const alone = since(t0);
    assert.ok(alone >= 350, `a patient record waited the window (${alone} ms)`);
    // Patient, then one that is not: both in one sync, at once.
    t0 = performance.now();
    const patient = store.commit(fields("k-2"), undefined, [], { patient: true }).then(() => since(t0));
    await new Promise((r) => setTimeout(r, 20));
    const urgent = store.commit(fields("k-3")).then(() => since(t0));
    const [p, u] = await Promise.all([patient, urgent]);
    assert.ok(p < 300 && u < 300, `the wait ended with the urgent record (${p} ms, ${u} ms)`);
    // Not patient (the default, as for a lock-step peer): no wait at all.
    t0 = performance.now();
    assert.equal(store.unsynced, 0);
    const last = store.commit(fields("k-4"));
    assert.equal(store.unsynced, 1, "appended, not durable yet");
    await last;
    assert.equal(store.unsynced, 0);
    assert.ok(since(t0) < 300, `an urgent record did not wait (${since(t0)} ms)`);
    await store.close();
    assert.deepEqual((await records(dir)).map((r) => r.key), ["k-1", "k-2", "k-3", "k-4"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore group-commits concurrent records, each exactly once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const out = store.stageOutput();
      await out.write(enc.encode(`output ${i}\n`));
      await store.commit(fields(`k-${i}`), out);
    }));
    await store.close();
    const keys = (await records(dir)).map((r) => r.key).sort();
    assert.equal(keys.length, 200);
    assert.equal(new Set(keys).size, 200);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.open() reads back settled jobs and cuts off a torn last record", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    await store.commit({ ...fields("a-1"), status: 3 }, store.stageOutput());
    await store.close();
    const path = join(dir, JOURNAL_FILE);
    const before = (await Deno.readFile(path)).length;
    await Deno.writeTextFile(path, '{"type":"job","key":"b-1","sta', { append: true });
    await Deno.mkdir(join(dir, "tmp"), { recursive: true });
    await Deno.writeTextFile(join(dir, "tmp", "123-1.part"), "half written");

    const again = await ResultsStore.open(dir);
    assert.deepEqual([...again.previous.settled], [["a-1", 3]]);
    assert.equal((await Deno.readFile(path)).length, before, "torn record cut off");
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "leftover temporary output removed");
    await again.commit(fields("c-1"), again.stageOutput());
    await again.close();
    assert.deepEqual((await records(dir)).map((r) => r.key), ["a-1", "c-1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.open() refuses a journal damaged before its last line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, JOURNAL_FILE), 'garbage\n{"type":"job","key":"a","status":0}\n');
    await assert.rejects(ResultsStore.open(dir), /damaged at line 1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.open() refuses a damaged journal with JOURNAL_DAMAGED and the line, not a usage error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = JSON.stringify({ type: "job", key: "a", status: 0 }) + "\n";
    await Deno.writeTextFile(join(dir, JOURNAL_FILE), good + good + "{oops\n" + good);
    await assert.rejects(
      ResultsStore.open(dir),
      (err) => err instanceof JournalDamagedError && err.code === "JOURNAL_DAMAGED" && err.line === 3,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ownProcessTest(
  import.meta.url,
  "ResultsStore.open() reads a journal far larger than its state in bounded memory",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, JOURNAL_FILE);
      await writeBigJournal(path, 400_000, 400);
      await Deno.writeTextFile(path, '{"type":"job","key":"torn', { append: true });
      const size = (await Deno.stat(path)).size;
      assert.ok(size > 128 * 1048576, `${size} bytes`);
      let peak = Deno.memoryUsage().rss;
      const before = peak;
      const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 5);
      let store;
      try {
        store = await ResultsStore.open(dir, { durable: false });
      } finally {
        clearInterval(sampler);
      }
      peak = Math.max(peak, Deno.memoryUsage().rss);
      assert.equal(store.previous.settled.size, 10);
      await store.close();
      assert.ok((peak - before) / 1048576 < 64, `RSS grew ${((peak - before) / 1048576).toFixed(1)} MB`);
      assert.equal((await Deno.stat(path)).size, size - '{"type":"job","key":"torn'.length, "torn tail cut");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("ResultsStore.commit(): patient records that keep coming are synced at most once a commit window, not one sync each", async () => {
  const dir = await Deno.makeTempDir();
  const original = Deno.FsFile.prototype.syncData;
  let syncs = 0;
  try {
    // A slow disk: each sync takes 30 ms, so records keep arriving during it.
    Deno.FsFile.prototype.syncData = async function (this: Deno.FsFile) {
      syncs++;
      await new Promise((r) => setTimeout(r, 30));
      return original.call(this);
    };
    const store = await ResultsStore.open(dir, { commitWindowMs: 200 });
    // A record every 20 ms for about 800 ms, nobody waiting on any of them.
    const t0 = performance.now();
    const commits: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      commits.push(store.commit(fields(`k-${i}`), undefined, [], { patient: true }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(commits);
    const ms = performance.now() - t0;
    await store.close();
    assert.ok(syncs <= Math.ceil(ms / 200) + 1, `${syncs} syncs in ${ms.toFixed(0)} ms with a 200 ms window`);
    assert.equal((await records(dir)).length, 40);
  } finally {
    Deno.FsFile.prototype.syncData = original;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore cuts a torn batch after a failed write, so later records stay readable", async () => {
  const dir = await Deno.makeTempDir();
  const original = Deno.FsFile.prototype.write;
  try {
    const store = await ResultsStore.open(dir);
    await store.commit(fields("k-1"), store.stageOutput());
    // The next journal write puts out 40 bytes, then the disk "fills up".
    let failNext = true;
    Deno.FsFile.prototype.write = async function (this: Deno.FsFile, p: Uint8Array) {
      if (failNext) {
        failNext = false;
        await original.call(this, p.subarray(0, 40));
        throw new Deno.errors.WriteZero("No space left on device (simulated)");
      }
      return original.call(this, p);
    };
    await assert.rejects(store.commit(fields("k-2"), store.stageOutput()), /No space left/);
    Deno.FsFile.prototype.write = original;
    assert.equal(store.unsynced, 0, "a record whose write failed is not counted as waiting");
    await store.commit(fields("k-3"), store.stageOutput());
    await store.close();
    const reopened = await ResultsStore.open(dir);
    assert.deepEqual(
      [...reopened.previous.settled.keys()],
      ["k-1", "k-3"],
      "the acknowledged record after the failure survives",
    );
    await reopened.close();
  } finally {
    Deno.FsFile.prototype.write = original;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StagedOutput past DIRECT_FROM_BYTES: committed byte for byte across the mark in odd chunks, written directly or (every direct appender taken) through the cache", async () => {
  const dir = await Deno.makeTempDir();
  const taken: DirectAppender[] = [];
  try {
    const store = await ResultsStore.open(dir);
    const size = DIRECT_FROM_BYTES + 5 * 1048576 + 4097; // the mark inside a chunk, a tail of no whole block
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >>> 13)) & 0xff;
    const sha256 = createHash("sha256").update(data).digest("hex");
    const commitOnce = async (key: string) => {
      const out = store.stageOutput();
      // 1 MiB + 3 bytes per chunk, the last one short; the caller's buffer is reused (as the reader does).
      const buffer = new Uint8Array((1 << 20) + 3);
      for (let at = 0; at < size; at += buffer.length) {
        const n = Math.min(buffer.length, size - at);
        buffer.set(data.subarray(at, at + n));
        await out.write(buffer.subarray(0, n));
      }
      const rec = await store.commit(fields(key), out);
      assert.equal(rec.size, size);
      assert.equal(rec.sha256, sha256);
      const back = await Deno.readFile(join(dir, rec.output!));
      assert.equal(back.length, size);
      assert.ok(back.every((b, i) => b === data[i]), "every byte where it was sent");
    };
    await commitOnce("k-1");
    assert.equal(DirectAppender.openCount, 0, "its appender closed with the commit");
    const probe = join(dir, "probe");
    await Deno.writeFile(probe, new Uint8Array(0));
    for (let i = 0; i < MAX_DIRECT_APPENDERS; i++) {
      const a = DirectAppender.open(probe, 0);
      if (a !== undefined) taken.push(a);
    }
    await commitOnce("k-2"); // none left: the whole output through the page cache
    await store.close();
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "nothing left under temporary names");
  } finally {
    for (const a of taken) await a.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StagedOutput discarded past DIRECT_FROM_BYTES: its direct appender is closed and nothing is left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    const out = store.stageOutput();
    const chunk = new Uint8Array(1 << 20).fill(0x5a);
    for (let i = 0; i < DIRECT_FROM_BYTES / chunk.length + 3; i++) await out.write(chunk);
    await out.discard();
    assert.equal(DirectAppender.openCount, 0);
    await store.close();
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "nothing left under temporary names");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.reopen() makes failed settlements past attempts, durably; the re-run's output gets its own name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    const failed = store.stageOutput();
    await failed.write(enc.encode("first try\n"));
    const first = await store.commit({ ...fields("bad-1"), status: 3 }, failed);
    await store.commit(fields("ok-1"), store.stageOutput());
    await store.close();

    const again = await ResultsStore.open(dir);
    assert.deepEqual([...again.previous.failedSettled.keys()], ["bad-1"]);
    const written = await again.reopen([
      { key: "bad-1", line: 1, status: 3, host: "h", attempt: 1 },
      { key: "never-1", line: 2, status: 1, host: "h", attempt: 1 },
    ]);
    assert.deepEqual(written.map((r) => r.key), ["bad-1"], "a key that is not settled is not reopened");
    assert.equal(again.previous.settled.has("bad-1"), false, "the state sees it unsettled at once");
    const rerun = again.stageOutput();
    await rerun.write(enc.encode("second try\n"));
    const second = await again.commit({ ...fields("bad-1"), attempt: 2 }, rerun);
    await again.close();
    assert.equal(first.output, "out/bad-1.out");
    assert.equal(second.output, "out/bad-1.2.out");
    assert.equal(Deno.readTextFileSync(join(dir, first.output!)), "first try\n", "earlier output kept");
    assert.deepEqual((await records(dir)).map((r) => `${r.type} ${r.key}`), [
      "job bad-1",
      "job ok-1",
      "reopen bad-1",
      "job bad-1",
    ]);

    // Read back: settled once more, and no longer a failure to reopen.
    const third = await ResultsStore.open(dir);
    assert.deepEqual([...third.previous.settled], [["ok-1", 0], ["bad-1", 0]]);
    assert.equal(third.previous.failedSettled.size, 0);
    assert.equal(third.previous.attempts.get("bad-1"), 2);
    await third.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.open() after a reopen with no settlement yet: the key is open, its next output named by attempt", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir);
    const { status: _, ...rest } = fields("k-1");
    await store.commitLost(rest, "its runners kept vanishing");
    await store.close();
    const reopening = await ResultsStore.open(dir);
    assert.deepEqual(reopening.previous.failedSettled.get("k-1"), { key: "k-1", status: null, host: "h", attempt: 1 });
    await reopening.reopen([{ key: "k-1", line: 1, status: null, host: "h", attempt: 1 }]);
    await reopening.close(); // a restart in the middle of a --resume-failed run
    const again = await ResultsStore.open(dir);
    assert.equal(again.previous.settled.has("k-1"), false);
    assert.ok(again.previous.reopened.has("k-1"));
    const out = again.stageOutput();
    await out.write(enc.encode("x"));
    assert.equal((await again.commit({ ...fields("k-1"), attempt: 2 }, out)).output, "out/k-1.2.out");
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.commit(): a link planted under files/ (at a key's directory or a gang member's) is refused, and nothing is written through it", async () => {
  const dir = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  try {
    const store = await ResultsStore.open(dir, { durable: false });
    Deno.mkdirSync(join(dir, "files", "k-2"), { recursive: true });
    Deno.symlinkSync(outside, join(dir, "files", "k-1"));
    Deno.symlinkSync(outside, join(dir, "files", "k-2", "node-1"));
    for (const [key, node] of [["k-1", undefined], ["k-2", 1]] as const) {
      const file = store.stageOutput();
      await file.write(enc.encode("ssh-ed25519 AAAA attacker\n"));
      const err = await store.commit(fields(key), undefined, [{ name: "authorized_keys", node, staged: file }])
        .then(() => undefined, (e) => e);
      assert.ok(err instanceof VicoError && err.code === "REFUSED", `${key}: refused, got ${err}`);
    }
    await store.close();
    assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written through the links");
    assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "the staged files are discarded");
    assert.deepEqual(await records(dir).catch(() => []), [], "no record");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("ResultsStore.commit(): a result whose record fails to be written leaves no file at a final name", async () => {
  const dir = await Deno.makeTempDir();
  const original = Deno.FsFile.prototype.write;
  try {
    const store = await ResultsStore.open(dir, { durable: false });
    const key = "0123456789abcdef-1";
    const out = store.stageOutput();
    await out.write(enc.encode("attempt 1\n"));
    const file = store.stageOutput();
    await file.write(enc.encode("returned\n"));
    const failed = store.stageOutput();
    await failed.write(enc.encode("failed attempt\n"));
    // Outputs are written in 64 KiB pieces; the journal write is the one that fails.
    Deno.FsFile.prototype.write = async function (this: Deno.FsFile, p: Uint8Array) {
      if (new TextDecoder().decode(p).startsWith('{"type":')) throw new Deno.errors.WriteZero("No space (simulated)");
      return await original.call(this, p);
    };
    await assert.rejects(store.commit(fields(key), out, [{ name: "r/a.txt", staged: file }]), /No space/);
    await assert.rejects(store.commitAttempt({ ...fields(key), status: 1 }, failed), /No space/);
    Deno.FsFile.prototype.write = original;
    // Its next attempt prints nothing: nothing of the failed one may pass for its output.
    await store.commit({ ...fields(key), attempt: 2 }, store.stageOutput());
    await store.close();
    assert.deepEqual([...Deno.readDirSync(join(dir, "out"))], [], "no output without its record");
    assert.equal(
      await Deno.lstat(join(dir, "files", key, "r", "a.txt")).then(() => true, () => false),
      false,
      "no returned file without its record",
    );
  } finally {
    Deno.FsFile.prototype.write = original;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.open() removes the outputs and returned files of unsettled keys that no record names (a crash between their rename and the record), and nothing else", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kept = "0123456789abcdef-1", crashed = "fedcba9876543210-1";
    let store = await ResultsStore.open(dir, { durable: false });
    const out = store.stageOutput();
    await out.write(enc.encode("kept\n"));
    const file = store.stageOutput();
    await file.write(enc.encode("kept file\n"));
    await store.commit(fields(kept), out, [{ name: "a.txt", staged: file }]);
    const failed = store.stageOutput();
    await failed.write(enc.encode("kept attempt\n"));
    await store.commitAttempt({ ...fields(kept), attempt: 2, status: 1 }, failed);
    // A key still running (--retries): its failed attempt's output is named, and stays.
    const retried = "aaaaaaaaaaaaaaaa-1";
    const first = store.stageOutput();
    await first.write(enc.encode("first try\n"));
    await store.commitAttempt({ ...fields(retried), status: 1 }, first);
    await store.close();
    // What a manager killed between the renames and the record leaves.
    const planted = [
      `out/${crashed}.out`,
      `out/${crashed}~1.out`,
      `files/${crashed}/sub/b.txt`,
      `out/${retried}~2.out`,
    ];
    // Not what a crash leaves: files of a key that is settled (the journal was edited?), and files that are not vico's.
    const foreign = ["out/README.txt", "files/notes/n.txt", `out/${kept}.3.out`, `files/${kept}/stale.txt`];
    for (const p of [...planted, ...foreign]) {
      Deno.mkdirSync(join(dir, p, ".."), { recursive: true });
      Deno.writeTextFileSync(join(dir, p), "orphan\n");
    }
    store = await ResultsStore.open(dir, { durable: false });
    // The crashed job runs again and prints nothing this time.
    await store.commit(fields(crashed), store.stageOutput());
    await store.close();
    const present = (p: string) => Deno.lstat(join(dir, p)).then(() => true, () => false);
    for (const p of planted) assert.equal(await present(p), false, `${p} removed`);
    for (const p of foreign) assert.equal(await present(p), true, `${p} (not vico's) left alone`);
    assert.equal(Deno.readTextFileSync(join(dir, "out", `${kept}.out`)), "kept\n");
    assert.equal(Deno.readTextFileSync(join(dir, "out", `${kept}~2.out`)), "kept attempt\n");
    assert.equal(Deno.readTextFileSync(join(dir, "out", `${retried}~1.out`)), "first try\n");
    assert.equal(await present(`files/${crashed}`), false, "its emptied directories go too");
    assert.equal(Deno.readTextFileSync(join(dir, "files", kept, "a.txt")), "kept file\n");
    assert.deepEqual((await verifyResults(dir)).problems, []);
    // A directory whose journal is gone keeps every file.
    Deno.removeSync(join(dir, JOURNAL_FILE));
    (await ResultsStore.open(dir, { durable: false })).close();
    for (const p of foreign) assert.equal(await present(p), true, `${p} kept with no journal`);
    assert.equal(await present(`out/${kept}.out`), true, "kept with no journal");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultsStore.commit(): every directory a returned file's commit made is in a directory synced before its record", async () => {
  const dir = await Deno.makeTempDir();
  const originalOpen = Deno.open;
  const originalSync = Deno.FsFile.prototype.sync;
  const paths = new WeakMap<Deno.FsFile, string>();
  const synced: string[] = [];
  let journalWrites = 0;
  try {
    const store = await ResultsStore.open(dir);
    const file = store.stageOutput();
    await file.write(enc.encode("deep\n"));
    // Watch which directories are synced, and when the record goes out.
    Deno.open = async (path: string | URL, options?: Deno.OpenOptions) => {
      const f = await originalOpen(path, options);
      paths.set(f, String(path));
      return f;
    };
    Deno.FsFile.prototype.sync = function (this: Deno.FsFile) {
      const p = paths.get(this);
      if (p !== undefined && journalWrites === 0) synced.push(p);
      return originalSync.call(this);
    };
    const originalWrite = Deno.FsFile.prototype.write;
    Deno.FsFile.prototype.write = function (this: Deno.FsFile, p: Uint8Array) {
      if (new TextDecoder().decode(p.subarray(0, 8)) === '{"type":') journalWrites++;
      return originalWrite.call(this, p);
    };
    try {
      await store.commit(fields("0123456789abcdef-1"), undefined, [{ name: "a/b/c.txt", staged: file }]);
    } finally {
      Deno.FsFile.prototype.write = originalWrite;
    }
    await store.close();
    // Each new directory's own entry lives in its parent: that parent must be synced.
    const key = join(dir, "files", "0123456789abcdef-1");
    for (const made of [join(dir, "files"), key, join(key, "a"), join(key, "a", "b")]) {
      assert.ok(synced.includes(join(made, "..")), `${made}'s parent synced before the record: ${synced.join(", ")}`);
    }
    assert.ok(synced.includes(join(key, "a", "b")), "the file's own directory synced");
  } finally {
    Deno.open = originalOpen;
    Deno.FsFile.prototype.sync = originalSync;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("firstRunSource() names the list of the journal's first run, reads no further and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await firstRunSource(dir), undefined, "no journal");
    const run = (source: unknown) => JSON.stringify({ type: "run", id: "r", started: "t", source, jobs: 1, pid: 1 });
    const journal = join(dir, JOURNAL_FILE);
    // A run with no source is passed over; later runs (another list, on purpose) do not change the owner;
    // damage and a torn tail after the first run are not read (nor cut).
    const text = [JSON.stringify(fields("k-1")), run(7), run("./lists/jobs.txt"), run("jobs.jsonl"), "{bad", "{torn"]
      .join("\n");
    await Deno.writeTextFile(journal, text);
    assert.equal(await firstRunSource(dir), "./lists/jobs.txt");
    assert.equal(await Deno.readTextFile(journal), text, "nothing written or cut");
    await Deno.writeTextFile(journal, "{bad\n" + run("jobs.txt") + "\n");
    assert.equal(await firstRunSource(dir), undefined, "damaged before any run: opening the store says so");
    await Deno.writeTextFile(journal, JSON.stringify(fields("k-1")) + "\n");
    assert.equal(await firstRunSource(dir), undefined, "no run recorded");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
