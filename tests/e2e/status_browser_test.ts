/// <reference lib="dom" />
/**
 * The status page in headless Chromium: live counts and runners while a
 * real manager and two real runners work, then the offline report's Gantt
 * lanes and throughput chart; then a 1,000-host run, offline and live (the
 * status server fed a generated journal and snapshot). Skipped (with the reason in its name) where
 * Chromium is not installed.
 *
 * `VICO_SCREENSHOT_DIR=DIR` keeps the screenshots there (see
 * scripts/screenshot_status.ts for the one in docs/).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryProcess, startManagerOn, startRunner } from "../helpers/entry_process.ts";
import { tempDir } from "../helpers/journal.ts";
import { browserUnavailable, launchChromium } from "../helpers/browser.ts";
import { JournalDigest } from "../../manager/observe/report.ts";
import type { StatusSnapshot } from "../../manager/observe/run_status.ts";
import { renderStatusPage } from "../../manager/observe/status_page.ts";
import { StatusServer } from "../../manager/observe/status_server.ts";
import { JOURNAL_FILE, type JournalRecord } from "../../manager/results/results_store.ts";

/** What the manager logs once its status page listens: the port is group 1. */
const STATUS_LISTENING = /Status page on http:\/\/[^ ]+:(\d+)\//;

const unavailable = browserUnavailable();
const skipped = unavailable === undefined ? "" : ` (skipped: ${unavailable})`;

Deno.test({
  name: `status page in Chromium: live counts, runners and jobs, then the report's Gantt lanes${skipped}`,
  ignore: unavailable !== undefined,
  async fn() {
    await using dir = await tempDir();
    const shots = Deno.env.get("VICO_SCREENSHOT_DIR") ?? dir.path;
    const n = 10;
    const jobs = Array.from({ length: n }, (_, i) => (i === 4 ? "sleep 1; exit 2" : `sleep 1; echo ${i}`));
    const { manager, port, results } = await startManagerOn(dir.path, jobs, [
      ...["--status-port", "0", "--blackhole-streak", "0"],
    ]);
    await using _m = manager;
    const statusPort = Number((await manager.waitFor(STATUS_LISTENING))[1]);
    await using browser = await launchChromium();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${statusPort}/`);
    const textOf = (id: string) => page.locator(`#${id}`).textContent();
    await page.waitForFunction(() => document.getElementById("n-total")?.textContent === "10");
    assert.equal(await textOf("n-runners"), "0");
    assert.equal(await textOf("n-pending"), "10");

    await using a = startRunner(port, ["--workers", "2", "--name", "node-a"]);
    await using b = startRunner(port, ["--workers", "2", "--name", "node-b"]);
    // Live: four jobs running on two runners, each listed with its jobs (read
    // from the page in one go, so that one poll's rendering is seen).
    const live = await page.waitForFunction(
      () => {
        if (document.getElementById("n-running")?.textContent !== "4") return false;
        return {
          runners: document.getElementById("n-runners")?.textContent,
          state: document.getElementById("state")?.textContent,
          rows: [...document.querySelectorAll("tr.runner")].map((tr) => ({
            host: tr.getAttribute("data-host"),
            jobs: [...tr.querySelectorAll("span.job")].map((s) => s.textContent ?? ""),
          })),
        };
      },
      null,
      { timeout: 10_000 },
    );
    const seen = (await live.jsonValue()) as {
      runners: string;
      state: string;
      rows: { host: string; jobs: string[] }[];
    };
    assert.equal(seen.runners, "2");
    assert.match(seen.state, /running/);
    assert.deepEqual(seen.rows.map((r) => r.host).sort(), ["node-a", "node-b"]);
    for (const row of seen.rows) {
      assert.equal(row.jobs.length, 2, `${row.host} runs two jobs`);
      for (const job of row.jobs) assert.match(job, /^line \d+/);
    }
    // The Gantt chart shows the running jobs at once, and the recorded ones as
    // the timeline is refreshed (every few seconds while the run goes).
    await page.waitForFunction(() => document.querySelectorAll("svg#gantt rect.job.running").length >= 2);
    await page.waitForFunction(() => document.querySelectorAll("svg#gantt rect.job:not(.running)").length >= 4, null, {
      timeout: 15_000,
    });
    await page.screenshot({ path: join(shots, "status-live.png"), fullPage: true });

    const [ms] = await Promise.all([manager.exit(), a.exit(), b.exit()]);
    assert.equal(ms.code, 1, "one job exits 2");
    // The manager waits (up to 3 s) for a watching page to fetch the final state.
    await page.waitForFunction((n) => document.querySelectorAll("svg#gantt rect.job:not(.running)").length === n, n);
    assert.match((await textOf("state"))!, /^finished, 1 failed/);
    assert.equal(await textOf("n-done"), "9");
    assert.equal(await page.locator("svg#gantt rect.job.running").count(), 0);

    // Offline: the same page with the run embedded, from `manager report --html`.
    const html = join(dir.path, "report.html");
    const report = EntryProcess.spawn("manager.ts", ["report", results, "--html", html]);
    await using _r = report;
    assert.equal((await report.exit()).code, 0, report.stderr);
    await page.goto(`file://${html}`);
    await page.waitForFunction(() => document.body.dataset.timeline === "drawn");
    assert.equal(await textOf("n-total"), "10");
    assert.equal(await textOf("n-done"), "9");
    assert.equal(await textOf("n-failed"), "1");
    assert.equal(await page.locator("#hosts tbody tr").count(), 2);
    const lanes = await page.evaluate(() =>
      [...document.querySelectorAll("svg#gantt g.host")].map((g) => ({
        host: g.getAttribute("data-host"),
        lanes: [...g.querySelectorAll("g.lane")].map((lane) =>
          [...lane.querySelectorAll("rect.job")].map((r) => ({
            x: Number(r.getAttribute("x")),
            w: Number(r.getAttribute("width")),
            failed: r.classList.contains("failed"),
          }))
        ),
      }))
    );
    assert.deepEqual(lanes.map((h) => h.host), ["node-a", "node-b"]);
    let rects = 0, failedRects = 0;
    for (const h of lanes) {
      assert.ok(h.lanes.length >= 1 && h.lanes.length <= 2, `${h.host}: ${h.lanes.length} lanes for 2 workers`);
      for (const lane of h.lanes) {
        assert.ok(lane.length >= 1, `${h.host}: no empty lane`);
        const sorted = [...lane].sort((p, q) => p.x - q.x);
        for (let i = 1; i < sorted.length; i++) {
          assert.ok(sorted[i].x >= sorted[i - 1].x + sorted[i - 1].w - 1.5, `${h.host}: jobs in one lane overlap`);
        }
        rects += lane.length;
        failedRects += lane.filter((r) => r.failed).length;
      }
    }
    assert.equal(rects, n, "one bar per job");
    assert.equal(failedRects, 1);
    assert.ok(await page.locator("svg#throughput rect.bar").count() >= 1, "throughput bars");
    assert.match((await textOf("throughput-note"))!, /Jobs settled per/);
    await page.screenshot({ path: join(shots, "status-report.png"), fullPage: true });
    assert.deepEqual(errors, [], "no script errors in the page");
  },
});

/** Hosts in the big-fleet test (as in the measured run). */
const FLEET = 1000;
/** Jobs per host in it (two at a time): 5000 intervals, the timeline's default limit. */
const JOBS_PER_HOST = 5;
/** The timeline must start within the first screen (the viewport is 900 px high). */
const FIRST_SCREEN_PX = 1200;
/** Most bytes of the page a 1,000-host run may weigh (HTML with the data embedded). */
const PAGE_BYTES_LIMIT = 1_500_000;

/** A journal of `FLEET` hosts × `JOBS_PER_HOST` jobs, two at a time per host; host 7 is slow, some jobs fail. */
function fleetJournal(): JournalRecord[] {
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  const iso = (ms: number) => new Date(t0 + ms).toISOString();
  const records: JournalRecord[] = [{
    type: "run",
    id: "0".repeat(32),
    started: iso(0),
    source: "fleet.txt",
    jobs: FLEET * JOBS_PER_HOST,
    pid: 1,
  }];
  let line = 0;
  for (let h = 0; h < FLEET; h++) {
    const host = `node-${String(h).padStart(4, "0")}`;
    const ends = [(h % 50) * 400, (h % 50) * 400 + 200];
    for (let j = 0; j < JOBS_PER_HOST; j++) {
      const lane = j % 2, start = ends[lane], seconds = h === 7 ? 60 : 4 + ((h * 7 + j * 3) % 11);
      ends[lane] = start + seconds * 1000 + 100;
      line++;
      records.push({
        type: "job",
        key: `k${line}`,
        line,
        command: `process --shard ${line} --host ${host}`,
        status: line % 97 === 0 ? 1 : 0,
        host,
        start: iso(start),
        end: iso(start + seconds * 1000),
        attempt: 1,
        size: 0,
        sha256: "",
        output: null,
      });
    }
  }
  return records;
}

/** A live snapshot of `FLEET` runners, each running two jobs. */
function fleetSnapshot(started: string, now: string): StatusSnapshot {
  const total = FLEET * JOBS_PER_HOST * 2;
  const runnerList = Array.from({ length: FLEET }, (_, h) => ({
    host: `node-${String(h).padStart(4, "0")}`,
    peer: `10.0.${h >> 8}.${h & 255}:40000`,
    protocol: "text" as const,
    joined: started,
    workers: 2,
    settled: h === 3 ? 0 : 5 + (h % 9),
    running: 2,
    jobs: [0, 1].map((k) => ({
      line: h * 2 + k + 1,
      name: `work ${h} ${k}`,
      since: new Date(Date.parse(now) - 5000 - k * 1000).toISOString(),
    })),
  }));
  return {
    version: 1,
    now,
    started,
    stopping: false,
    finished: false,
    source: "fleet.txt",
    resultsDir: "fleet.results",
    jobs: {
      total,
      pending: total - FLEET * 7,
      running: FLEET * 2,
      leased: 0,
      done: FLEET * 5,
      failed: 0,
      lost: 0,
      skipped: 0,
    },
    runners: FLEET,
    rate: 300,
    overallRate: 280,
    etaSeconds: 100,
    elapsedSeconds: 60,
    runnerList,
    durations: { buckets: [], sum: 0, count: 0 },
  } as unknown as StatusSnapshot;
}

Deno.test({
  name:
    `status page in Chromium: a 1,000-host run opens on the timeline within the first screen, page weight bounded${skipped}`,
  ignore: unavailable !== undefined,
  async fn() {
    await using dir = await tempDir();
    const shots = Deno.env.get("VICO_SCREENSHOT_DIR") ?? dir.path;
    const records = fleetJournal();
    const digest = new JournalDigest();
    for (const r of records) digest.feed(r);
    const html = renderStatusPage({
      resultsDir: "fleet.results",
      report: digest.report(),
      timeline: digest.timeline(),
    });
    const bytes = new TextEncoder().encode(html).length;
    assert.ok(bytes < PAGE_BYTES_LIMIT, `the report page weighs ${bytes} bytes`);
    const file = join(dir.path, "fleet.html");
    await Deno.writeTextFile(file, html);

    await using browser = await launchChromium();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const topOf = (selector: string) =>
      page.evaluate((s) => document.querySelector(s)!.getBoundingClientRect().top + scrollY, selector);

    // Offline report.
    await page.goto(`file://${file}`);
    await page.waitForFunction(() => document.body.dataset.timeline === "drawn");
    await page.screenshot({ path: join(shots, "status-fleet-report.png"), fullPage: true });
    assert.equal(await page.locator("#n-runners").textContent(), String(FLEET));
    const rows = await page.locator("#hosts tbody tr").count();
    assert.ok(rows >= 5 && rows <= 12, `the host table summarizes: ${rows} rows`);
    assert.ok(await page.locator("#hosts tbody tr[data-host='node-0007']").count() === 1, "the slowest host is listed");
    const top = await topOf("svg#gantt");
    assert.ok(top < FIRST_SCREEN_PX, `the timeline starts at ${top} px`);
    const gantt = await page.evaluate(() => document.getElementById("gantt")!.getBoundingClientRect().height);
    assert.ok(gantt > 100 && gantt < 1000, `the timeline is ${gantt} px high`);
    assert.ok(await page.locator("svg#gantt g.band").count() >= 10, "hosts aggregated into utilization bands");
    // Filtering the hosts finds any one, in the table and on the timeline (its own lanes).
    await page.fill("#host-filter", "node-0421");
    await page.waitForFunction(() => document.querySelectorAll("#hosts tbody tr").length === 1);
    assert.equal(await page.locator("#hosts tbody tr").getAttribute("data-host"), "node-0421");
    assert.equal(await page.locator("svg#gantt g.host[data-host='node-0421'] rect.job").count(), JOBS_PER_HOST);
    await page.fill("#host-filter", "");
    await page.waitForFunction(() => document.querySelectorAll("svg#gantt g.band").length >= 10);

    // Live: the status server fed the same journal and a snapshot of 1,000 runners.
    const results = join(dir.path, "fleet.results");
    await Deno.mkdir(results);
    await Deno.writeTextFile(join(results, JOURNAL_FILE), records.map((r) => JSON.stringify(r) + "\n").join(""));
    const started = (records[0] as { started: string }).started;
    const server = StatusServer.start({
      port: 0,
      resultsDir: results,
      snapshot: () => fleetSnapshot(started, new Date(Date.parse(started) + 60_000).toISOString()),
    });
    try {
      const served = await (await fetch(`http://127.0.0.1:${server.address.port}/status?runners=300&jobs=32`)).text();
      const pageBytes = (await (await fetch(`http://127.0.0.1:${server.address.port}/`)).text()).length;
      await page.goto(`http://127.0.0.1:${server.address.port}/`);
      await page.waitForFunction(
        () => document.body.dataset.timeline === "drawn" && document.querySelectorAll("svg#gantt g.band").length > 0,
        null,
        { timeout: 15_000 },
      );
      await page.screenshot({ path: join(shots, "status-fleet-live.png"), fullPage: true });
      assert.ok(
        served.length + pageBytes < PAGE_BYTES_LIMIT,
        `the live page and its status weigh ${served.length + pageBytes} bytes`,
      );
      const liveRows = await page.locator("tr.runner").count();
      assert.ok(liveRows >= 5 && liveRows <= 12, `the runner table summarizes: ${liveRows} rows`);
      assert.equal(
        await page.locator("tr.runner[data-host='node-0003']").count(),
        1,
        "the runner that settled nothing is listed",
      );
      const liveTop = await topOf("svg#gantt");
      assert.ok(liveTop < FIRST_SCREEN_PX, `the live timeline starts at ${liveTop} px`);
    } finally {
      await server.close();
    }
    assert.deepEqual(errors, [], "no script errors in the page");
  },
});
