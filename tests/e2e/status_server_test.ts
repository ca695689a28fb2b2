/**
 * End to end: `manager --status-port` with a real runner; the status
 * server's JSON, Prometheus text, page and timeline while jobs run.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { tempDir } from "../helpers/journal.ts";
import type { StatusSnapshot } from "../../manager/observe/run_status.ts";
import type { Timeline } from "../../manager/observe/report.ts";

/** What the manager logs once its status page listens: the port is group 1. */
const STATUS_LISTENING = /Status page on http:\/\/[^ ]+:(\d+)\//;

async function poll<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: T | undefined;
  while (performance.now() < deadline) {
    last = await get();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
}

/** Parses Prometheus text into sample → value, checking each line's shape. */
function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    out.set(m[1], m[2] === "+Inf" ? Infinity : Number(m[2]));
  }
  return out;
}

Deno.test("manager --status-port: /status, /metrics, / and /timeline show runners and running jobs", async () => {
  await using dir = await tempDir();
  const n = 9;
  const jobs = Array.from({ length: n }, (_, i) => `sleep 0.8; echo ${i}`);
  const { manager, port } = await startManagerOn(dir.path, jobs, ["--status-port", "0"]);
  await using _m = manager;
  const statusPort = Number((await manager.waitFor(STATUS_LISTENING))[1]);
  const base = `http://127.0.0.1:${statusPort}`;
  const getStatus = async () => (await (await fetch(`${base}/status`)).json()) as StatusSnapshot;

  // Pages polling in a burst share one snapshot (built at most every 250 ms).
  const burst = await Promise.all(Array.from({ length: 20 }, () => getStatus()));
  assert.ok(new Set(burst.map((b) => b.now)).size <= 2, "one or two snapshots served 20 requests");
  await new Promise((r) => setTimeout(r, 300));
  const before = await getStatus();
  assert.notEqual(before.now, burst.at(-1)!.now, "and a fresh one after 250 ms");
  assert.equal(before.jobs.total, n);
  assert.equal(before.jobs.pending, n);
  assert.equal(before.runners, 0);

  await using runner = startRunner(port, ["--workers", "3", "--name", "node-a"]);
  const live = await poll("a runner with running jobs", getStatus, (s) => s.runners === 1 && s.jobs.running === 3);
  const r = live.runnerList[0];
  assert.equal(r.host, "node-a");
  assert.equal(r.protocol, "text");
  assert.match(r.peer, /^127\.0\.0\.1:\d+$/);
  assert.equal(r.running, 3);
  assert.equal(r.jobs.length, 3);
  for (const job of r.jobs) {
    assert.ok(job.line >= 1 && job.line <= n);
    assert.match(job.name, /^sleep 0\.8; echo \d$/);
    assert.ok(job.since !== null && Date.parse(job.since) <= Date.parse(live.now));
  }
  assert.equal(live.finished, false);
  const trimmed = (await (await fetch(`${base}/status?runners=5&jobs=1`)).json()) as StatusSnapshot;
  assert.equal(trimmed.runnerList[0].jobs.length, 1, "?jobs=1 lists one job per runner");
  assert.equal(trimmed.runnerList[0].running, 3, "and still counts them all");

  const metricsRes = await fetch(`${base}/metrics`);
  assert.match(metricsRes.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const metrics = parsePrometheus(await metricsRes.text());
  assert.equal(metrics.get("vico_runners"), 1);
  assert.equal(metrics.get("vico_jobs_total"), n);
  assert.ok(metrics.get('vico_jobs{state="running"}')! >= 1);
  assert.ok(metrics.get('vico_host_running_jobs{host="node-a"}')! >= 1);
  assert.ok(metrics.has('vico_job_duration_seconds_bucket{le="+Inf"}'));

  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /^text\/html/);
  assert.match(page.headers.get("content-security-policy")!, /default-src 'none'/);
  const html = await page.text();
  assert.match(html, /<svg id="gantt"/);
  assert.ok(!/(src|href)="https?:/.test(html), "no external assets");

  // The timeline grows as results are recorded: lanes per host from the journal.
  const timeline = await poll(
    "three jobs on the timeline",
    async () => (await (await fetch(`${base}/timeline`)).json()) as Timeline,
    (t) => t.jobs.length >= 3,
  );
  assert.deepEqual(timeline.hosts.map((h) => h.name), ["node-a"]);
  assert.ok(timeline.hosts[0].lanes >= 1 && timeline.hosts[0].lanes <= 3, `lanes: ${timeline.hosts[0].lanes}`);
  for (const j of timeline.jobs) assert.ok(j.end >= j.start && j.lane < timeline.hosts[0].lanes);

  assert.equal(
    (await fetch(`${base}/status`, { method: "POST" }).then(async (r) => (await r.body?.cancel(), r))).status,
    405,
  );
  assert.equal((await fetch(`${base}/nothing`).then(async (r) => (await r.body?.cancel(), r))).status, 404);

  const [ms, rs] = await Promise.all([manager.exit(), runner.exit()]);
  assert.equal(ms.code, 0, manager.stderr);
  assert.equal(rs.code, 0, runner.stderr);
  await assert.rejects(fetch(`${base}/status`), "the status server closes with the run");
});

Deno.test("manager --status-port: a port in use stops the manager at start (exit 3) and says which", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "true\n");
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const manager = EntryProcess.spawn("manager.ts", [
    "--jobs",
    list,
    "--port",
    "0",
    "--status-port",
    String(taken.addr.port),
  ]);
  await using _m = manager;
  const status = await manager.exit();
  assert.equal(status.code, 3);
  assert.match(
    manager.stderr,
    new RegExp(`cannot serve the status page on 127\\.0\\.0\\.1:${taken.addr.port}: the port is in use`),
  );
  await assert.rejects(Deno.stat(join(dir.path, "jobs.results")), Deno.errors.NotFound, "nothing written");
});

Deno.test("manager --status-port: refuses a port out of range (exit 2)", async () => {
  const manager = EntryProcess.spawn("manager.ts", ["--jobs", "-", "--status-port", "70000"], { stdin: "true\n" });
  await using _m = manager;
  assert.equal((await manager.exit()).code, 2);
  assert.match(manager.stderr, /--status-port 70000 is out of range/);
});

Deno.test("manager off a terminal logs a progress line every 10 s; not with --no-progress", async () => {
  await using dir = await tempDir();
  const list = join(dir.path, "jobs.txt");
  await Deno.writeTextFile(list, "sleep 10.6\ntrue\n");
  const run = (extra: string[], name: string) =>
    EntryProcess.spawn("manager.ts", ["--jobs", list, "--results", join(dir.path, name), "--local", "1", ...extra]);
  await using plain = run([], "a");
  await using quiet = run(["--no-progress"], "b");
  const [a, b] = await Promise.all([plain.exit(), quiet.exit()]);
  assert.equal(a.code, 0, plain.stderr);
  assert.equal(b.code, 0, quiet.stderr);
  assert.match(
    plain.stderr,
    /INFO {2}progress: Progress: 0\/2 settled, 0 ok, 0 failed, 1 running, 1 pending; 1 runner\(s\); 0\.0 jobs\/s; ETA \?; elapsed 10s\n/,
  );
  assert.equal(plain.stderr.match(/Progress:/g)?.length, 1, "one line in 10.6 s");
  assert.doesNotMatch(quiet.stderr, /Progress:/);
});
