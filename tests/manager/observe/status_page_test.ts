/**
 * The status page's HTML: the browser script embedded from
 * status_page_client.ts is plain JavaScript the browser can parse, and the
 * embedded run cannot end its `<script>` element.
 */

import assert from "node:assert/strict";
import { renderStatusPage } from "../../../manager/observe/status_page.ts";
import { statusPageClient } from "../../../manager/observe/status_page_client.ts";
import { JournalDigest } from "../../../manager/observe/report.ts";

/** The text of each inline `<script>` element without a type. */
function scripts(html: string): string[] {
  return [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
}

Deno.test("renderStatusPage: embeds statusPageClient's source as one script that parses as JavaScript", () => {
  const found = scripts(renderStatusPage());
  assert.equal(found.length, 1);
  assert.ok(found[0].includes(String(statusPageClient)), "the function's own source");
  // Parses (without running): no TypeScript syntax or imports are left.
  assert.doesNotThrow(() => new Function(found[0]));
  assert.doesNotMatch(found[0], /\bimport\b/);
});

Deno.test("renderStatusPage: an embedded run with markup in its names stays inside its JSON element", () => {
  const d = new JournalDigest();
  d.feed({
    type: "job",
    key: "k",
    line: 1,
    command: "echo '</script><script>alert(1)</script>'",
    status: 0,
    host: "<b>a</b>",
    start: "2026-01-01T00:00:00Z",
    end: "2026-01-01T00:00:01Z",
    attempt: 1,
    size: 0,
    sha256: "",
    output: null,
  });
  const html = renderStatusPage({ resultsDir: "r</title>", report: d.report(), timeline: d.timeline() });
  assert.equal(html.match(/<\/script>/g)?.length, 2, "only the two script elements end");
  assert.ok(!html.includes("<b>a</b>"));
  assert.ok(!html.includes("r</title>"));
});
