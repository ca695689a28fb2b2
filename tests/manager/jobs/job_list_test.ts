import assert from "node:assert/strict";
import { JobListError } from "../../../core/errors.ts";
import { parseJobList } from "../../../manager/jobs/job_list.ts";
import { parseManagerLine } from "../../../protocol/text_codec.ts";

const enc = new TextEncoder();

Deno.test({
  name: "parseJobList() skips blank and # lines and keeps line numbers and occurrences",
  permissions: "none",
  fn() {
    const list = parseJobList(enc.encode("# header\necho a\n\n   \n  # indented comment\necho b\r\necho a\nlast"));
    assert.deepEqual(list.commands, ["echo a", "echo b", "echo a", "last"]);
    assert.deepEqual([...list.lines], [2, 6, 7, 8]);
    assert.deepEqual([...list.occurrences], [1, 1, 2, 1]);
  },
});

Deno.test({
  name: "parseJobList() keeps runs of spaces, quotes and trailing spaces verbatim",
  permissions: "none",
  fn() {
    const line = `printf '%s\\n' "a   b"   'c  d'  `;
    assert.deepEqual(parseJobList(enc.encode(line + "\n")).commands, [line]);
  },
});

Deno.test({
  name: "parseJobList() refuses a job the protocol cannot carry, naming its line",
  permissions: "none",
  fn() {
    const cases: [string, number, RegExp][] = [
      ["echo a\nFINO\necho b\n", 2, /FINO/],
      ["echo a\n\necho b\rmore\n", 3, /line break/],
      ["ERARO x\n", 1, /ERARO/],
    ];
    for (const [text, line, why] of cases) {
      assert.throws(
        () => parseJobList(enc.encode(text)),
        (e) => e instanceof JobListError && e.line === line && why.test(e.message) && e.code === "JOB_LIST_INVALID",
        text.slice(0, 20),
      );
    }
  },
});

Deno.test({
  name: "parseJobList() leaves out alone a line that is not valid UTF-8, naming its line; the rest are served",
  permissions: "none",
  fn() {
    // Line 2: a Latin-1 name (é as one byte 0xe9); line 3: the same name in UTF-8; line 4: a stray 0xff.
    const latin1 = [...enc.encode("echo a\necho "), 0xe9, ...enc.encode("t\n")];
    const rest = [...enc.encode("echo t\u00e9\necho "), 0xff, ...enc.encode("\necho b\n")];
    const list = parseJobList(new Uint8Array([...latin1, ...rest]));
    assert.deepEqual(list.commands, ["echo a", "echo t\u00e9", "echo b"]);
    assert.deepEqual([...list.lines], [1, 3, 5]);
    assert.deepEqual(list.refused, [{ line: 2, reason: "not valid UTF-8" }, { line: 4, reason: "not valid UTF-8" }]);
    assert.equal(parseJobList(enc.encode("echo a\n")).refused, undefined, "none refused: no field");
  },
});

Deno.test({
  name: "parseJobList() leaves out alone a command too long for a protocol line, naming its line",
  permissions: "none",
  fn() {
    const list = parseJobList(enc.encode("ok\n" + "x".repeat(70_000) + "\necho later\n"));
    assert.deepEqual(list.commands, ["ok", "echo later"]);
    assert.deepEqual([...list.lines], [1, 3]);
    assert.equal(list.refused?.length, 1);
    assert.equal(list.refused![0].line, 2);
    assert.match(list.refused![0].reason, /too long for a 65536-byte protocol line/);
  },
});

Deno.test({
  name: "parseJobList() reserves exactly what a runner reads as a drop: ERARO alone or ERARO and a space",
  permissions: "none",
  fn() {
    for (const job of ["ERARO", "ERARO x", "ERARO  two spaces"]) {
      assert.equal(parseManagerLine(job, "job").kind, "eraro", job);
      assert.throws(
        () => parseJobList(enc.encode(`true\n${job}\n`)),
        (e) =>
          e instanceof JobListError && e.line === 2 &&
          /is "ERARO" or starts with "ERARO " \(ERARO and a space\)/.test(e.message),
        job,
      );
    }
    // Other words that merely begin with those letters are ordinary commands, and travel as such.
    const fine = ["ERARO_LEVEL=2 make", "ERAROS", "ERARO\tx", "echo ERARO x"];
    assert.deepEqual(parseJobList(enc.encode(fine.join("\n") + "\n")).commands, fine);
    for (const job of fine) assert.deepEqual(parseManagerLine(job, "job"), { kind: "job", name: job });
  },
});
