import assert from "node:assert/strict";
import { latestAdhocRunName, makeAdhocRunDir, nextAdhocRunName } from "../../cli/adhoc_results.ts";

Deno.test("nextAdhocRunName: counts per day, ignoring other names", () => {
  const day = new Date(2026, 0, 5, 23, 59);
  assert.equal(
    nextAdhocRunName(day, ["2026-01-05-2", "2026-01-05-10", "2026-01-04-99", "2026-01-05-x", "README"]),
    "2026-01-05-11",
  );
  assert.equal(nextAdhocRunName(day, ["2026-01-04-3"]), "2026-01-05-1");
});

Deno.test("latestAdhocRunName: the newest by day then counter, none among other names", () => {
  assert.equal(latestAdhocRunName(["2026-01-05-9", "2026-01-05-10", "2025-12-31-40"]), "2026-01-05-10");
  assert.equal(latestAdhocRunName(["notes", ".vico-results"]), undefined);
});

Deno.test("makeAdhocRunDir: each run a new directory, also when started at once", async () => {
  const root = await Deno.makeTempDir({ prefix: "vico-adhoc-" });
  try {
    const parent = `${root}/vico-results`;
    const day = new Date(2026, 11, 1);
    const made = await Promise.all(Array.from({ length: 8 }, () => makeAdhocRunDir(parent, day)));
    assert.equal(new Set(made).size, 8);
    const names = made.map((p) => p.slice(parent.length + 1)).sort((a, b) =>
      a.localeCompare(b, "en", { numeric: true })
    );
    assert.deepEqual(names, Array.from({ length: 8 }, (_, i) => `2026-12-01-${i + 1}`));
    for (const path of made) assert.ok((await Deno.stat(path)).isDirectory);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
