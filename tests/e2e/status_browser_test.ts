/// <reference lib="dom" />
/**
 * The status page in headless Chromium: live counts and runners while a
 * real manager and two real runners work, then the offline report's Gantt
 * lanes and throughput chart. Skipped (with the reason in its name) where
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
