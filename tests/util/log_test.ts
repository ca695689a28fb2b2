import assert from "node:assert/strict";
import type { Logger, LogRecord } from "@logtape/logtape";
import {
  formatJournalRecord,
  formatJsonRecord,
  formatRecord,
  loggingFromFlags,
  RateLimitedLog,
} from "../../util/log.ts";
import { VicoError } from "../../core/errors.ts";

const record: LogRecord = {
  category: ["vico", "manager"],
  level: "warning",
  message: ["Runner ", "n1", " lost\nafter ", 3, " s"],
  rawMessage: "Runner {host} lost\nafter {s} s",
  properties: { host: "n1", s: 3, err: new Error("reset") },
  timestamp: Date.UTC(2026, 10, 23, 12, 3, 4, 567),
};

Deno.test({
  name: "formatRecord writes time, level, logger and message on one line",
  permissions: "none",
  fn() {
    assert.equal(formatRecord(record), "12:03:04.567 WARN  manager: Runner n1 lost\nafter 3 s\n");
  },
});

Deno.test({
  name: "formatJournalRecord leaves the time to journald and prefixes the syslog priority",
  permissions: "none",
  fn() {
    assert.equal(formatJournalRecord(record), "<4>manager: Runner n1 lost after 3 s\n");
    assert.match(formatJournalRecord({ ...record, level: "error" }), /^<3>/);
    assert.match(formatJournalRecord({ ...record, level: "debug" }), /^<7>/);
  },
});

Deno.test({
  name: "formatJsonRecord writes one parseable JSON line with the structured properties",
  permissions: "none",
  fn() {
    const line = formatJsonRecord(record);
    assert.equal(line.split("\n").length, 2, "one line");
    assert.deepEqual(JSON.parse(line), {
      time: "2026-11-23T12:03:04.567Z",
      level: "warning",
      logger: "manager",
      message: "Runner n1 lost\nafter 3 s",
      properties: { host: "n1", s: 3, err: "Error: reset" },
    });
  },
});

Deno.test({
  name:
    "formatRecord, formatJournalRecord: control characters in a value (a runner's chosen host name) are shown as \\xHH",
  permissions: "none",
  fn() {
    // ESC ] 0 ; … BEL retitles a terminal; ESC [ 2 J clears it.
    const evil: LogRecord = { ...record, message: ["Runner ", "n1\x1b]0;pwned\x07\x1b[2J\r", " joined"] };
    assert.equal(formatRecord(evil), "12:03:04.567 WARN  manager: Runner n1\\x1b]0;pwned\\x07\\x1b[2J\\x0d joined\n");
    assert.equal(formatJournalRecord(evil), "<4>manager: Runner n1\\x1b]0;pwned\\x07\\x1b[2J\\x0d joined\n");
    const inspected: LogRecord = { ...record, message: ["Got ", { host: "a\x1bb" }, ""] };
    assert.ok(!formatRecord(inspected).includes("\x1b"), formatRecord(inspected));
    // The message's own text and a value's line breaks stay as they are.
    assert.equal(
      formatRecord({ ...record, message: ["a\n", "b\n\tc", ""] }),
      "12:03:04.567 WARN  manager: a\nb\n\tc\n",
    );
  },
});

Deno.test({
  name: "loggingFromFlags reads --log-level and --log-format, with -q and -v as shortcuts",
  permissions: "none",
  fn() {
    assert.deepEqual(loggingFromFlags({}), { level: "info", format: undefined });
    assert.deepEqual(loggingFromFlags({ quiet: true }), { level: "warning", format: undefined });
    assert.deepEqual(loggingFromFlags({ verbose: true, "log-format": "json" }), { level: "debug", format: "json" });
    assert.deepEqual(loggingFromFlags({ quiet: true, "log-level": "error" }), { level: "error", format: undefined });
    assert.throws(() => loggingFromFlags({ "log-level": "loud" }), (e) => e instanceof VicoError && e.code === "USAGE");
    assert.throws(() => loggingFromFlags({ "log-format": "xml" }), /--log-format must be text, json or journal/);
  },
});

Deno.test({
  name: "RateLimitedLog lets a few lines through per window, then reports how many it held back",
  permissions: "none",
  fn() {
    const lines: string[] = [];
    const sink = (level: string) => (message: string, props: Record<string, unknown>) =>
      lines.push(`${level} ${message.replace(/\{(\w+)\}/g, (_, k) => String(props[k]))}`);
    const log = { info: sink("info"), warn: sink("warn") } as unknown as Logger;
    const departures = new RateLimitedLog(log, "departed runner(s)", 3, 1000);
    for (let i = 0; i < 10; i++) departures.log("info", "Runner {host} left", { host: `r${i}` }, 5000 + i);
    assert.deepEqual(lines, ["info Runner r0 left", "info Runner r1 left", "info Runner r2 left"]);
    departures.log("warn", "Runner {host} left", { host: "late" }, 6000);
    assert.deepEqual(lines.slice(3), ["warn 7 more departed runner(s) were not logged", "warn Runner late left"]);
  },
});
