/// <reference lib="dom" />
/**
 * Refreshes docs/status-page.png: runs a small demo (a manager with
 * `--status-port` and three runners on this machine), opens the live status
 * page in headless Chromium part-way through the run and takes a
 * screenshot.
 *
 *     deno run -P=test --allow-sys=homedir scripts/screenshot_status.ts [OUT.png]
 *
 * Needs Chromium (/usr/bin/chromium, or VICO_CHROMIUM) and playwright-core.
 *
 * @module
 */

import { join } from "node:path";
import { ROOT, startManager, startRunner } from "../tests/helpers/entry_process.ts";
import { browserUnavailable, launchChromium } from "../tests/helpers/browser.ts";

const out = Deno.args[0] ?? join(ROOT, "docs", "status-page.png");
const why = browserUnavailable();
if (why !== undefined) {
  console.error(`screenshot_status: ${why}`);
  Deno.exit(2);
}

const dir = await Deno.makeTempDir({ prefix: "vico-screenshot-" });
try {
  // 60 jobs of 0.3 to 2.1 s, every 13th failing, the same each time.
  const jobs = Array.from({ length: 60 }, (_, i) => {
    const secs = (0.3 + ((i * 7) % 10) * 0.2).toFixed(1);
    return i % 13 === 12 ? `sleep ${secs}; exit 1` : `sleep ${secs}; echo part ${i}`;
  });
  const list = join(dir, "jobs.txt");
  await Deno.writeTextFile(list, jobs.join("\n") + "\n");
  const { manager, port } = await startManager([
    "--jobs",
    list,
    "--results",
    join(dir, "jobs.results"),
    "--port",
    "0",
    "--status-port",
    "0",
    "--blackhole-streak",
    "0",
  ]);
  await using _m = manager;
  const statusPort = Number((await manager.waitFor(/Status page on http:\/\/[^ ]+:(\d+)\//))[1]);
  await using browser = await launchChromium();
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 820 });
  await page.goto(`http://127.0.0.1:${statusPort}/`);
  await using _a = startRunner(port, ["--workers", "4", "--name", "node-a"]);
  await using _b = startRunner(port, ["--workers", "4", "--name", "node-b"]);
  await using _c = startRunner(port, ["--workers", "2", "--name", "node-c"]);
  // Part-way: most jobs done, some running, the timeline drawn.
  await page.waitForFunction(
    () => Number(document.getElementById("n-done")?.textContent) >= 30,
    null,
    { timeout: 60_000 },
  );
  await page.waitForTimeout(1200);
  await page.screenshot({ path: out, fullPage: true });
  console.log(`screenshot_status: wrote ${out}`);
  await manager.exit();
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
