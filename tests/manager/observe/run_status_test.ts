import assert from "node:assert/strict";
import {
  DURATION_BUCKETS,
  formatMetrics,
  JOBS_PER_RUNNER_LIMIT,
  RunStatus,
  type RunStatusSource,
  type StatusLink,
} from "../../../manager/observe/run_status.ts";
import {
  formatProgressBar,
  formatProgressLine,
  formatSummary,
  ProgressLog,
} from "../../../manager/observe/progress.ts";

/** A run of `total` jobs whose queue and links the test moves by hand, with a clock it sets. */
function fakeRun(total: number, options: { skipped?: number; failedEarlier?: number } = {}) {
  let now = 1_000_000;
  const held = new Map<StatusLink, Set<number>>();
  const state = { pending: total - (options.skipped ?? 0), leased: 0, stopping: false };
  const source: RunStatusSource = {
    get pending() {
      return state.pending;
    },
    get running() {
      let n = 0;
      for (const jobs of held.values()) n += jobs.size;
      return n;
    },
    get leased() {
      return state.leased;
    },
    get stopping() {
      return state.stopping;
    },
    links: () => held.keys(),
    jobsOf: (link) => held.get(link) ?? new Set(),
    protocolOf: (link) => (link.host.startsWith("node") ? "binary" : "text"),
  };
  const status = new RunStatus({
    total,
    source: "jobs.txt",
    resultsDir: "jobs.results",
    lines: Array.from({ length: total }, (_, i) => i + 1),
    nameOf: (job) => `echo ${job}`,
    now: () => now,
    ...options,
  });
  status.attach(source);
  const run = {
    status,
    state,
    join(host: string): StatusLink {
      const link = { host, peer: `10.0.0.1:${4000 + held.size}`, runnerId: `${host}-id` };
      held.set(link, new Set());
      status.joined(link);
      return link;
    },
    leave(link: StatusLink) {
      held.delete(link);
    },
    assign(job: number, link: StatusLink) {
      state.pending--;
      held.get(link)!.add(job);
      status.assigned(job, link);
    },
    settle(job: number, code: number, link: StatusLink) {
      held.get(link)!.delete(job);
      status.settled(job, code, link);
    },
    advance(ms: number) {
      now += ms;
    },
  };
  return run;
}

Deno.test("RunStatus.snapshot: runners with their host, workers and current jobs since their hand-out", () => {
  const run = fakeRun(10);
  const a = run.join("alpha");
  const n = run.join("node7");
  run.assign(0, a);
  run.advance(1500);
  run.assign(1, a);
  run.assign(2, n);
  run.advance(500);
  const s = run.status.snapshot();
  assert.equal(s.version, 1);
  assert.equal(s.runners, 2);
  assert.deepEqual(s.jobs, {
    total: 10,
    pending: 7,
    running: 3,
    leased: 0,
    done: 0,
    failed: 0,
    lost: 0,
    skipped: 0,
  });
  const alpha = s.runnerList.find((r) => r.host === "alpha")!;
  assert.equal(alpha.protocol, "text");
  assert.equal(alpha.id, "alpha-id");
  assert.equal(alpha.workers, 2, "the most jobs held at once");
  assert.equal(alpha.running, 2);
  assert.deepEqual(alpha.jobs.map((j) => [j.line, j.name]), [[1, "echo 0"], [2, "echo 1"]]);
  assert.equal(Date.parse(s.now) - Date.parse(alpha.jobs[0].since!), 2000);
  assert.equal(Date.parse(s.now) - Date.parse(alpha.jobs[1].since!), 500);
  assert.equal(s.runnerList.find((r) => r.host === "node7")!.protocol, "binary");
  assert.equal(s.finished, false);
  assert.equal(s.etaSeconds, null, "no job settled yet: no rate, no ETA");
});

Deno.test("RunStatus.rate: jobs settled over the last 10 seconds; ETA from it", () => {
  const run = fakeRun(100);
  const a = run.join("alpha");
  run.advance(20_000);
  // 30 jobs in the first 10 s of the window's past, then 20 in the last 10 s.
  for (let j = 0; j < 30; j++) {
    run.assign(j, a);
    run.settle(j, 0, a);
  }
  run.advance(10_000);
  for (let j = 30; j < 50; j++) {
    run.assign(j, a);
    run.advance(500);
    run.settle(j, j % 10 === 0 ? 1 : 0, a);
  }
  const c = run.status.counts();
  assert.ok(Math.abs(c.rate - 2) < 0.25, `about 20 jobs in 10 s, got ${c.rate}`);
  assert.equal(c.jobs.done + c.jobs.failed, 50);
  assert.equal(c.jobs.failed, 2);
  assert.ok(c.etaSeconds !== null && Math.abs(c.etaSeconds - 50 / c.rate) < 1e-9);
  // Nothing settles for a while: the rate falls to 0 and the ETA is unknown.
  run.advance(11_000);
  assert.equal(run.status.counts().rate, 0);
  assert.equal(run.status.counts().etaSeconds, null);
});

Deno.test("RunStatus: lost jobs count as failed and lost; earlier runs' jobs as done or failed", () => {
  const run = fakeRun(10, { skipped: 4, failedEarlier: 1 });
  const a = run.join("alpha");
  run.assign(4, a);
  run.leave(a);
  run.status.lost(4);
  const c = run.status.counts();
  assert.deepEqual(
    [c.jobs.done, c.jobs.failed, c.jobs.lost, c.jobs.skipped, c.jobs.pending, c.jobs.running],
    [3, 2, 1, 4, 5, 0],
  );
  assert.equal(c.runners, 0, "its runner is gone");
});

Deno.test("RunStatus.histogram: durations from hand-out to result, cumulative", () => {
  const run = fakeRun(4);
  const a = run.join("alpha");
  for (const [job, ms] of [[0, 50], [1, 700], [2, 3000], [3, 20_000_000]] as const) {
    run.assign(job, a);
    run.advance(ms);
    run.settle(job, 0, a);
  }
  const h = run.status.histogram();
  assert.equal(h.count, 4);
  assert.ok(Math.abs(h.sum - (0.05 + 0.7 + 3 + 20_000)) < 1e-6);
  const at = (le: number) => h.buckets.find(([b]) => b === le)![1];
  assert.equal(at(0.1), 1);
  assert.equal(at(1), 2);
  assert.equal(at(5), 3);
  assert.equal(at(DURATION_BUCKETS.at(-1)!), 3, "20000 s is beyond the last bound: only in +Inf (count)");
  assert.equal(run.status.counts().finished, true);
});

Deno.test("RunStatus.snapshot: a runner's listed jobs are capped, its count is not", () => {
  const run = fakeRun(200);
  const a = run.join("big");
  for (let j = 0; j < 100; j++) run.assign(j, a);
  const r = run.status.snapshot().runnerList[0];
  assert.equal(r.jobs.length, JOBS_PER_RUNNER_LIMIT);
  assert.equal(r.running, 100);
});

Deno.test("RunStatus: hand-out times of jobs no runner holds any more are dropped (bounded memory)", () => {
  const run = fakeRun(5000);
  // Jobs handed out and then taken away without a settlement (their runner vanished).
  for (let j = 0; j < 4000; j++) {
    const link = run.join("alpha");
    run.assign(j, link);
    run.leave(link);
    run.state.pending++;
  }
  assert.ok(run.status.tracked <= 1025, `${run.status.tracked} hand-out times kept for 0 running jobs`);
});

/** Parses Prometheus text: metric name with labels → value. */
function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const types = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      assert.ok(["gauge", "counter", "histogram"].includes(type), line);
      assert.ok(!types.has(name), `one TYPE per metric: ${name}`);
      types.add(name);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const m = line.match(/^([a-z_]+(?:\{[^}]*\})?) (\S+)$/);
    assert.ok(m, `sample line: ${JSON.stringify(line)}`);
    out.set(m[1], m[2] === "+Inf" ? Infinity : Number(m[2]));
  }
  return out;
}

Deno.test("formatMetrics: jobs by state, runners, rate and a duration histogram in Prometheus text", () => {
  const run = fakeRun(3);
  const a = run.join('we"ird\\host');
  run.assign(0, a);
  run.advance(300);
  run.settle(0, 0, a);
  run.assign(1, a);
  const text = formatMetrics(run.status.snapshot(), [['we"ird\\host', 1]]);
  const m = parsePrometheus(text);
  assert.equal(m.get('vico_jobs{state="pending"}'), 1);
  assert.equal(m.get('vico_jobs{state="running"}'), 1);
  assert.equal(m.get('vico_jobs{state="done"}'), 1);
  assert.equal(m.get("vico_jobs_total"), 3);
  assert.equal(m.get("vico_runners"), 1);
  assert.ok(m.get("vico_jobs_per_second")! > 0);
  assert.equal(m.get('vico_host_running_jobs{host="we\\"ird\\\\host"}'), 1, "label values escaped");
  assert.equal(m.get('vico_job_duration_seconds_bucket{le="0.1"}'), 0);
  assert.equal(m.get('vico_job_duration_seconds_bucket{le="0.5"}'), 1);
  assert.equal(m.get('vico_job_duration_seconds_bucket{le="+Inf"}'), 1);
  assert.equal(m.get("vico_job_duration_seconds_count"), 1);
  assert.ok(Math.abs(m.get("vico_job_duration_seconds_sum")! - 0.3) < 1e-9);
});

Deno.test("formatProgressLine and formatProgressBar: settled, failed, running, runners, rate, ETA", () => {
  const run = fakeRun(10);
  const a = run.join("alpha");
  run.join("beta");
  run.assign(0, a);
  run.assign(1, a);
  run.settle(0, 0, a);
  run.assign(2, a);
  run.settle(2, 4, a);
  run.advance(1000);
  const c = run.status.counts();
  assert.match(
    formatProgressLine(c),
    /^Progress: 2\/10 settled, 1 ok, 1 failed, 1 running, 7 pending; 2 runner\(s\); 2\.0 jobs\/s; ETA 4s; elapsed 1s$/,
  );
  assert.match(
    formatProgressBar(c),
    /^\[######-+\] 2\/10 20% {2}2\.0 jobs\/s {2}ETA 4s {2}1 running {2}2 runner\(s\) {2}1 failed$/,
  );
});

Deno.test("ProgressLog: writes a progress line at every interval until stopped", async () => {
  const run = fakeRun(2);
  const lines: string[] = [];
  const log = new ProgressLog(() => run.status.counts(), 20, (line) => lines.push(line));
  await new Promise((r) => setTimeout(r, 90));
  log.stop();
  const seen = lines.length;
  assert.ok(seen >= 2, `got ${seen} lines`);
  assert.match(lines[0], /^Progress: 0\/2 settled/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(lines.length, seen, "nothing after stop()");
});

Deno.test("formatSummary: control characters in a runner's host name reach the terminal escaped", () => {
  const text = formatSummary({
    jobs: 1,
    skipped: 0,
    succeeded: 1,
    failed: 0,
    unsettled: 0,
    stopped: false,
    elapsedMs: 1000,
    byHost: [["node\x1b]0;pwned\x07", 1]],
    resultsDir: "res",
  });
  assert.doesNotMatch(text.replaceAll("\n", ""), /\p{Cc}/u, JSON.stringify(text));
  assert.match(text, /node\\x1b\]0;pwned\\x07 /);
});
