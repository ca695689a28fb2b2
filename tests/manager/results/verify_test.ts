import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { JOURNAL_FILE } from "../../../manager/results/results_store.ts";
import { verifyResults } from "../../../manager/results/verify.ts";
import { tempDir } from "../../helpers/journal.ts";

const job = (key: string) => JSON.stringify({ type: "job", key, status: 0, output: null, size: 0 }) + "\n";

Deno.test("verifyResults: a torn last line, with or without its newline, is a torn tail and not a problem", async () => {
  for (const torn of ['{"type":"job","ke', '{"type":"job","ke\n']) {
    await using dir = await tempDir();
    await Deno.writeTextFile(join(dir.path, JOURNAL_FILE), job("a") + job("b") + torn);
    const report = await verifyResults(dir.path);
    assert.deepEqual([report.records, report.problems, report.tornTail], [2, [], true], JSON.stringify(torn));
  }
});

Deno.test("verifyResults: damage before the last line is a problem at its line, and nothing after it is read", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, JOURNAL_FILE), job("a") + "{oops\n" + job("c"));
  const report = await verifyResults(dir.path);
  assert.deepEqual(report.problems, [{ line: 2, path: JOURNAL_FILE, problem: "record does not parse" }]);
  assert.equal(report.records, 1);
  assert.equal(report.tornTail, false);
});

Deno.test("verifyResults: one settlement per key, one more after each reopen; anything else is a problem at its line", async () => {
  const reopen = (key: string) =>
    JSON.stringify({ type: "reopen", key, line: 1, status: 1, host: "h", attempt: 1 }) + "\n";
  await using good = await tempDir();
  await Deno.writeTextFile(join(good.path, JOURNAL_FILE), job("a") + reopen("a") + job("a") + reopen("a") + job("a"));
  assert.deepEqual((await verifyResults(good.path)).problems, []);
  await using bad = await tempDir();
  await Deno.writeTextFile(join(bad.path, JOURNAL_FILE), job("a") + job("b") + job("a") + reopen("c") + reopen("b"));
  assert.deepEqual((await verifyResults(bad.path)).problems, [
    { line: 3, path: JOURNAL_FILE, problem: "settles a a second time, with no reopen record before it" },
    { line: 4, path: JOURNAL_FILE, problem: "reopens c, which is not settled" },
  ]);
});

Deno.test("verifyResults: a link, a FIFO or a path outside the directory where a record names a file is a problem, and is not read", async () => {
  await using dir = await tempDir();
  const hi = { size: 3, sha256: createHash("sha256").update("hi\n").digest("hex") };
  const rec = (key: string, output: string) => JSON.stringify({ type: "job", key, status: 0, output, ...hi }) + "\n";
  Deno.mkdirSync(join(dir.path, "out"));
  Deno.writeTextFileSync(join(dir.path, "elsewhere"), "hi\n");
  Deno.writeTextFileSync(join(dir.path, "out", "a.out"), "hi\n");
  Deno.symlinkSync(join(dir.path, "elsewhere"), join(dir.path, "out", "b.out"));
  Deno.mkdirSync(join(dir.path, "aside"));
  Deno.writeTextFileSync(join(dir.path, "aside", "x"), "hi\n");
  Deno.mkdirSync(join(dir.path, "files"));
  Deno.symlinkSync(join(dir.path, "aside"), join(dir.path, "files", "f"));
  const fifo = join(dir.path, "out", "c.out");
  assert.equal((await new Deno.Command("mkfifo", { args: [fifo] }).output()).code, 0);
  Deno.writeTextFileSync(
    join(dir.path, JOURNAL_FILE),
    rec("a", "out/a.out") + rec("b", "out/b.out") + rec("c", "out/c.out") + rec("d", "../elsewhere") +
      rec("e", join(dir.path, "elsewhere")) + rec("f", "files/f/x"),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), 3000));
  const verifying = verifyResults(dir.path);
  const report = await Promise.race([verifying, hung]);
  clearTimeout(timer);
  if (report === "hung") {
    // Let the blocked open of the FIFO go, so that the test can end.
    (await Deno.open(fifo, { write: true })).close();
    await verifying;
    assert.fail("verify hung on the FIFO at out/c.out");
  }
  assert.deepEqual(report.problems.map((p) => [p.line, p.path]), [
    [2, "out/b.out"],
    [3, "out/c.out"],
    [4, "../elsewhere"],
    [5, join(dir.path, "elsewhere")],
    [6, "files/f/x"],
  ]);
  assert.match(report.problems[4].problem, /files\/f is not a directory/);
  assert.match(report.problems[0].problem, /not a plain file/);
  assert.match(report.problems[2].problem, /outside the results directory/);
});

Deno.test("verifyResults: a record cut back while it is checked (its write failed, its files removed) is no problem", async () => {
  await using dir = await tempDir();
  const hi = { size: 3, sha256: createHash("sha256").update("hi\n").digest("hex") };
  const rec = (key: string) => JSON.stringify({ type: "job", key, status: 0, output: `out/${key}.out`, ...hi }) + "\n";
  Deno.mkdirSync(join(dir.path, "out"));
  for (const k of ["a", "b"]) Deno.writeTextFileSync(join(dir.path, "out", `${k}.out`), "hi\n");
  const journal = join(dir.path, JOURNAL_FILE);
  Deno.writeTextFileSync(journal, rec("a") + rec("b"));
  // The manager's write of b's batch fails while verify reads: it cuts the
  // journal back and removes b's output, then records c in its place.
  const lstat = Deno.lstat;
  Deno.lstat = async (path: string | URL) => {
    if (String(path).endsWith("b.out")) {
      Deno.truncateSync(journal, rec("a").length);
      Deno.removeSync(join(dir.path, "out", "b.out"));
      Deno.writeTextFileSync(journal, JSON.stringify({ type: "run", id: "x".repeat(rec("b").length) }) + "\n", {
        append: true,
      });
    }
    return await lstat(path);
  };
  try {
    assert.deepEqual((await verifyResults(dir.path)).problems, []);
  } finally {
    Deno.lstat = lstat;
  }
  // A file that is missing for good still is a problem.
  Deno.writeTextFileSync(journal, rec("a") + rec("b"));
  assert.deepEqual((await verifyResults(dir.path)).problems.map((p) => [p.line, p.problem]), [[2, "missing"]]);
});
