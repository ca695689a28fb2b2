import assert from "node:assert/strict";
import { join } from "node:path";
import {
  feedJournal,
  formatReport,
  JournalDigest,
  packLanes,
  THROUGHPUT_BUCKETS,
} from "../../../manager/observe/report.ts";
import type { AttemptRecord, JobRecord, JournalRecord } from "../../../manager/results/results_store.ts";
import { renderStatusPage } from "../../../manager/observe/status_page.ts";
import { tempDir } from "../../helpers/journal.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (ms: number) => new Date(T0 + ms).toISOString();

function job(line: number, host: string, start: number, end: number, status: number | null = 0): JobRecord {
  return {
    type: "job",
    key: `k${line}`,
    line,
    command: `cmd ${line}`,
    status,
    host,
    start: iso(start),
    end: iso(end),
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
    ...(status === null ? { lost: "gone" } : {}),
  };
}

function attempt(line: number, host: string, start: number, end: number): AttemptRecord {
  return { ...job(line, host, start, end, 1), type: "attempt", status: 1 };
}

Deno.test("packLanes: overlapping jobs of one host get different lanes; back-to-back ones share", () => {
  const { lane, lanes } = packLanes([
    { host: "a", start: 0, end: 10 },
    { host: "a", start: 5, end: 15 },
    { host: "a", start: 10, end: 20 }, // starts as the first ends: lane 0 again
    { host: "b", start: 0, end: 100 },
    { host: "a", start: 12, end: 13 }, // 0 and 1 busy (10-20, 5-15): a third lane
  ]);
  assert.deepEqual(lane, [0, 1, 0, 0, 2]);
  assert.deepEqual([...lanes], [["a", 3], ["b", 1]]);
});

Deno.test("JournalDigest.report: ok, failed, lost, retried, per host, statuses, slowest, wall time", () => {
  const d = new JournalDigest();
  const records: JournalRecord[] = [
    { type: "run", id: "r0", started: iso(0), source: "jobs.txt", jobs: 5, pid: 1 },
    job(1, "a", 0, 1000),
    attempt(2, "b", 0, 500),
    job(2, "a", 1000, 4000, 2),
    job(3, "b", 600, 700),
    job(4, "b", 700, 9000, null),
    { type: "assign", key: "k5", runner: "r", host: "b", at: iso(9000), run: "r0", attempt: 1 },
    job(5, "a", 4000, 10_000),
  ];
  for (const r of records) d.feed(r);
  const r = d.report();
  assert.equal(r.runs, 1);
  assert.equal(r.source, "jobs.txt");
  assert.deepEqual([r.jobs, r.ok, r.failed, r.lost, r.retried, r.maxAttempt], [5, 3, 1, 1, 1, 1]);
  assert.equal(r.wallSeconds, 10);
  assert.equal(r.busySeconds, 1 + 0.5 + 3 + 0.1 + 8.3 + 6);
  assert.deepEqual(r.hosts.map((h) => [h.host, h.jobs, h.ok, h.attempts]), [["a", 3, 2, 0], ["b", 2, 1, 1]]);
  assert.deepEqual(r.statuses, [["0", 3], ["2", 1], ["lost", 1]]);
  assert.deepEqual(r.slowest.map((s) => s.line), [4, 5, 2, 1, 3]);
  const text = formatReport(r, "res");
  assert.match(text, /5 settled .*: 3 ok, 1 failed, 1 lost; 1 failed attempt\(s\) retried/);
  assert.match(text, /wall time: 10\.0s/);
  assert.match(text, /^\s+a\s+3\s+2\s+0\s+/m);
  assert.ok(text.includes("exit status: 0×3  2×1  lost×1"), text);
});

Deno.test("JournalDigest.timeline: lanes per host, times from the run's start, only the last N jobs", () => {
  const d = new JournalDigest(3);
  d.feed({ type: "run", id: "r0", started: iso(0), source: "j", jobs: 4, pid: 1 });
  d.feed(job(1, "a", 100, 1100));
  d.feed(job(2, "a", 100, 1200));
  d.feed(job(3, "b", 200, 300, 1));
  d.feed(job(4, "a", 1200, 2100)); // right after line 2 on the same lane
  const t = d.timeline();
  assert.equal(t.origin, iso(0));
  assert.equal(t.total, 4);
  assert.equal(t.omitted, 1);
  assert.deepEqual(t.jobs.map((j) => j.line), [2, 3, 4], "the most recent three");
  assert.deepEqual(t.hosts, [{ name: "a", lanes: 1 }, { name: "b", lanes: 1 }]);
  const four = t.jobs.find((j) => j.line === 4)!;
  assert.deepEqual([four.start, four.end, four.lane, t.hosts[four.host].name], [1200, 2100, 0, "a"]);
  assert.equal(t.span, 2100);
  // Throughput counts every job, kept or not.
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  assert.equal(sum(t.throughput.ok), 3);
  assert.equal(sum(t.throughput.failed), 1);
});

Deno.test("JournalDigest: throughput stays within its bucket count for a long run (buckets widen)", () => {
  const d = new JournalDigest(10);
  d.feed({ type: "run", id: "r0", started: iso(0), source: "j", jobs: 1, pid: 1 });
  const day = 86_400_000;
  for (let i = 0; i < 2000; i++) d.feed(job(i + 1, `h${i % 7}`, (i * day) / 2000, ((i + 1) * day) / 2000));
  const t = d.timeline();
  assert.ok(t.throughput.ok.length <= THROUGHPUT_BUCKETS, `${t.throughput.ok.length} buckets`);
  assert.ok(t.throughput.bucketMs * THROUGHPUT_BUCKETS >= day);
  assert.equal(t.throughput.ok.reduce((x, y) => x + y, 0), 2000);
  assert.equal(t.jobs.length, 10);
});

Deno.test("feedJournal: reads only complete lines and resumes from the returned offset", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "journal.jsonl");
  const first = JSON.stringify(job(1, "a", 0, 10)) + "\n";
  const second = JSON.stringify(job(2, "a", 10, 20));
  await Deno.writeTextFile(path, first + second.slice(0, 30));
  const d = new JournalDigest();
  const offset = await feedJournal(path, d);
  assert.equal(offset, new TextEncoder().encode(first).length);
  assert.equal(d.report().jobs, 1, "the torn line waits");
  await Deno.writeTextFile(path, first + second + "\n");
  const end = await feedJournal(path, d, offset);
  assert.equal(d.report().jobs, 2);
  assert.equal(d.report().unreadable, 0);
  assert.equal(end, (await Deno.stat(path)).size);
});

Deno.test("feedJournal: a journal of many 64 KiB reads, fed in two steps, counts every line once", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "journal.jsonl");
  const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify(job(i + 1, `h${i % 3}`, i, i + 5)) + "\n");
  const cut = 3000;
  await Deno.writeTextFile(path, lines.slice(0, cut).join("") + lines[cut].slice(0, 40));
  assert.ok((await Deno.stat(path)).size > 4 * 65536, "several reads");
  const d = new JournalDigest();
  const offset = await feedJournal(path, d);
  assert.equal(offset, new TextEncoder().encode(lines.slice(0, cut).join("")).length);
  await Deno.writeTextFile(path, lines.join(""));
  assert.equal(await feedJournal(path, d, offset), (await Deno.stat(path)).size);
  assert.equal(d.report().jobs, 5000);
  assert.equal(d.report().unreadable, 0);
});

Deno.test("renderStatusPage: embedded data cannot close its script element", () => {
  const d = new JournalDigest();
  d.feed({ ...job(1, "</script><script>alert(1)</script>", 0, 10), command: "echo '</script>' <b>" });
  const html = renderStatusPage({ resultsDir: "r<b>", report: d.report(), timeline: d.timeline() });
  assert.equal(html.match(/<\/script>/g)?.length, 2, "only the page's own two script elements end");
  assert.ok(!html.includes("<b>"), "no markup from the run");
  assert.match(html, /<title>vico report: r&#60;b&#62;<\/title>/);
  const live = renderStatusPage();
  assert.match(live, /<script id="vico-data" type="application\/json">null<\/script>/);
  assert.ok(!/(src|href)="https?:/.test(live), "no external assets");
});

Deno.test("JournalDigest: a gang task occupies a lane on each member's host and counts once in the totals", () => {
  const d = new JournalDigest();
  d.feed(job(1, "n1,n2", 0, 1000));
  d.feed(job(2, "n1", 0, 500));
  const r = d.report();
  assert.equal(r.jobs, 2);
  assert.equal(r.ok, 2);
  assert.deepEqual(r.hosts.map((h) => [h.host, h.jobs, h.busySeconds]), [["n1", 2, 1.5], ["n2", 1, 1]]);
  const t = d.timeline();
  assert.deepEqual(t.hosts, [{ name: "n1", lanes: 2 }, { name: "n2", lanes: 1 }]);
  assert.equal(t.jobs.length, 3);
  assert.equal(t.throughput.ok.reduce((x, y) => x + y, 0), 2, "throughput counts the task once");
});

Deno.test("JournalDigest.report: jobs and attempts stopped by --timeout count as timed out, apart from failed", async () => {
  await using dir = await tempDir();
  const timedOut = { timedOut: true };
  const records = [
    { type: "run", started: iso(0), source: "jobs.txt", jobs: 4, pid: 1 },
    { ...attempt(1, "a", 0, 2000), status: 143, ...timedOut },
    { ...job(1, "b", 2000, 4000, 143), attempt: 2, ...timedOut },
    job(2, "a", 0, 100, 143), // killed by someone else: a failure, not a timeout
    job(3, "a", 100, 200, 1),
    job(4, "b", 0, 50),
  ];
  // Fed as a journal file, as `manager report` reads it.
  const path = join(dir.path, "journal.jsonl");
  await Deno.writeTextFile(path, records.map((r) => JSON.stringify(r) + "\n").join(""));
  const d = new JournalDigest();
  await feedJournal(path, d);
  const r = d.report();
  assert.deepEqual([r.jobs, r.ok, r.failed, r.timedOut, r.lost], [4, 1, 2, 1, 0]);
  assert.deepEqual([r.retried, r.retriedTimedOut], [1, 1]);
  assert.deepEqual(r.hosts.map((h) => [h.host, h.jobs, h.ok, h.timedOut]), [["a", 2, 0, 0], ["b", 2, 1, 1]]);
  assert.deepEqual(r.slowest[0], { line: 1, name: "cmd 1", host: "b", seconds: 2, status: 143, timedOut: true });
  const text = formatReport(r, "res");
  assert.match(
    text,
    /4 settled .*: 1 ok, 2 failed, 1 timed out, 0 lost; 1 failed attempt\(s\) retried \(1 timed out\)/,
  );
  assert.match(text, /2\.00s\s+line 1\s+b\s+timed out \(exit 143\)\s+cmd 1/);
  const t = d.timeline();
  assert.deepEqual(t.jobs.filter((j) => j.timedOut).map((j) => [j.line, j.kind]), [[1, "attempt"], [1, "job"]]);
  assert.equal(t.throughput.ok.reduce((x, y) => x + y, 0), 1, "a timed-out job is not ok");
  const page = renderStatusPage({ resultsDir: "res", report: r, timeline: t });
  assert.ok(page.includes('"timedOut":1'), "the page carries the count");
  assert.ok(page.includes('r.timedOut + " timed out, "'), "and shows it");
});

Deno.test("formatReport: control characters in host names and commands (a runner names its own host) reach the terminal escaped", () => {
  const d = new JournalDigest();
  const evil = "node\x1b]0;pwned\x07\x9b2J";
  d.feed({ type: "run", id: "r0", started: iso(0), source: "jobs\x1b[2J.txt", jobs: 1, pid: 1 });
  d.feed({ ...job(1, evil, 0, 1000), command: "echo \x1b[31mred" });
  const text = formatReport(d.report(), "res\x1b[8m");
  assert.doesNotMatch(text.replaceAll("\n", ""), /\p{Cc}/u, JSON.stringify(text));
  assert.match(text, /node\\x1b\]0;pwned\\x07\\x9b2J/, "shown, escaped");
  assert.match(text, /echo \\x1b\[31mred/);
});
