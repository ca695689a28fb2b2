import assert from "node:assert/strict";
import { join } from "node:path";
import { JournalDamagedError, VicoError } from "../../core/errors.ts";
import { type JournalEntry, JournalSplitter, type JournalTail, readJournal } from "../../io/journal_reader.ts";
import { CHUNKINGS, concat } from "../helpers/chunked_source.ts";
import { writeBigJournal } from "../helpers/journal.ts";
import { ownProcessTest } from "../helpers/own_process.ts";

const enc = new TextEncoder();
const rec = (i: number) => JSON.stringify({ type: "job", key: `k-${i}`, status: 0, note: "é✓" }) + "\n";

/** Pushes `bytes` through a splitter in the given chunking. */
function split(bytes: Uint8Array, chunking: number | number[]): { entries: JournalEntry[]; tail: JournalTail } {
  const s = new JournalSplitter("j.jsonl");
  const sizes = typeof chunking === "number" ? [chunking] : chunking;
  const entries: JournalEntry[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[Math.min(i, sizes.length - 1)], bytes.length - at);
    // A reused buffer, as a file read hands it: the splitter must not keep it.
    const buf = new Uint8Array(n);
    buf.set(bytes.subarray(at, at + n));
    entries.push(...s.push(buf));
    buf.fill(0x7b);
    at += n;
  }
  return { entries, tail: s.finish() };
}

function damageOf(fn: () => unknown): JournalDamagedError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof JournalDamagedError, String(err));
    return err;
  }
  assert.fail("no damage reported");
}

Deno.test("JournalSplitter: records split across chunks come out whole with their offsets, in every chunking", () => {
  const lines = [rec(1), rec(2), rec(3)];
  const bytes = concat(...lines);
  for (const [name, chunking] of CHUNKINGS) {
    const { entries, tail } = split(bytes, chunking);
    assert.deepEqual(entries.map((e) => e.record.key), ["k-1", "k-2", "k-3"], name);
    let at = 0;
    for (const [i, e] of entries.entries()) {
      assert.deepEqual([e.offset, e.end, e.line], [at, at + enc.encode(lines[i]).length, i + 1], name);
      at = e.end;
    }
    assert.deepEqual(tail, { end: bytes.length, nextLine: 4 }, name);
  }
});

Deno.test("JournalSplitter: a torn last line without its newline is reported, not returned, in every chunking", () => {
  const good = concat(rec(1), rec(2));
  const bytes = concat(good, rec(3).slice(0, 20));
  for (const [name, chunking] of CHUNKINGS) {
    const { entries, tail } = split(bytes, chunking);
    assert.equal(entries.length, 2, name);
    assert.deepEqual(tail, { end: good.length, nextLine: 3, torn: { offset: good.length, line: 3, bytes: 20 } }, name);
  }
});

Deno.test("JournalSplitter: a last line that ends in its newline but does not parse is a torn tail", () => {
  const good = concat(rec(1));
  for (const last of ['{"type":"job","ke\n', "\n", "null\n", "\xff\n"]) {
    const bytes = concat(good, last === "\xff\n" ? new Uint8Array([0xff, 0x0a]) : last);
    for (const [name, chunking] of CHUNKINGS) {
      const { entries, tail } = split(bytes, chunking);
      assert.equal(entries.length, 1, `${JSON.stringify(last)}, ${name}`);
      assert.deepEqual(tail.torn, { offset: good.length, line: 2, bytes: bytes.length - good.length }, name);
      assert.equal(tail.end, good.length);
    }
  }
});

Deno.test("JournalSplitter: damage before the last line is JOURNAL_DAMAGED with its line number, in every chunking", () => {
  const before = concat(rec(1), rec(2));
  const bytes = concat(before, "garbage\n", rec(4));
  for (const [name, chunking] of CHUNKINGS) {
    const err = damageOf(() => split(bytes, chunking));
    assert.equal(err.code, "JOURNAL_DAMAGED", name);
    assert.ok(err instanceof VicoError);
    assert.deepEqual([err.line, err.offset], [3, before.length], name);
    assert.match(err.message, /damaged at line 3/);
  }
  // The records before the damage come out first, even from the same chunk.
  const s = new JournalSplitter("j.jsonl");
  assert.deepEqual(s.push(bytes).map((e) => e.line), [1, 2]);
  assert.equal(damageOf(() => s.finish()).line, 3);
  assert.equal(damageOf(() => s.push(enc.encode(rec(5)))).line, 3, "and it stays damaged");
  // Even one byte after a line that does not parse makes it damage, not a tail.
  assert.equal(damageOf(() => split(concat(rec(1), "[1,\n", "x"), 1)).line, 2);
});

Deno.test("JournalSplitter: a line longer than the limit is damage, without holding more than the limit", () => {
  const s = new JournalSplitter("j.jsonl", { maxLineBytes: 100 });
  s.push(enc.encode(rec(1)));
  s.push(new Uint8Array(60).fill(0x20));
  assert.deepEqual(s.push(new Uint8Array(60).fill(0x20)), []);
  const err = damageOf(() => s.finish());
  assert.equal(err.line, 2);
});

Deno.test("readJournal: reads from an offset what was appended since, as the live timeline does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "journal.jsonl");
    await Deno.writeTextFile(path, rec(1) + rec(2) + rec(3).slice(0, 10));
    const seen: JournalEntry[] = [];
    const first = await readJournal(path, (e) => void seen.push(e));
    assert.deepEqual(seen.map((e) => e.record.key), ["k-1", "k-2"]);
    assert.equal(first.end, enc.encode(rec(1) + rec(2)).length);
    assert.equal(first.torn?.offset, first.end, "the line being written waits");

    await Deno.writeTextFile(path, rec(1) + rec(2) + rec(3) + rec(4));
    seen.length = 0;
    const second = await readJournal(path, (e) => void seen.push(e), { offset: first.end, line: first.nextLine });
    assert.deepEqual(seen.map((e) => [e.record.key, e.line, e.offset]), [
      ["k-3", 3, first.end],
      ["k-4", 4, first.end + enc.encode(rec(3)).length],
    ]);
    assert.deepEqual(second, { end: (await Deno.stat(path)).size, nextLine: 5 });

    await Deno.writeTextFile(path, "junk\n" + rec(6), { append: true });
    await assert.rejects(
      readJournal(path, () => {}, { offset: second.end, line: second.nextLine }),
      (err) => err instanceof JournalDamagedError && err.line === 5 && err.offset === second.end,
      "damage after the offset is an error; its line counts from the journal's start",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readJournal: waits for an async record handler before reading on", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "journal.jsonl");
    await Deno.writeTextFile(path, Array.from({ length: 5000 }, (_, i) => rec(i)).join(""));
    let busy = false, count = 0;
    const tail = await readJournal(path, async () => {
      assert.ok(!busy);
      busy = true;
      if (count++ % 1000 === 0) await new Promise((r) => setTimeout(r, 1));
      busy = false;
    });
    assert.equal(count, 5000);
    assert.equal(tail.end, (await Deno.stat(path)).size);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ownProcessTest(import.meta.url, "readJournal: a 1,000,000-record journal is read in bounded memory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "journal.jsonl");
    await writeBigJournal(path, 1_000_000, 120);
    const size = (await Deno.stat(path)).size;
    assert.ok(size > 100 * 1048576, `${size} bytes: more than the bound`);
    const before = Deno.memoryUsage().rss;
    let count = 0, peak = before;
    const tail = await readJournal(path, () => {
      if (++count % 50_000 === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
    });
    assert.equal(count, 1_000_000);
    assert.deepEqual(tail, { end: size, nextLine: 1_000_001 });
    const growth = (peak - before) / 1048576;
    assert.ok(growth < 50, `RSS grew ${growth.toFixed(1)} MB`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
