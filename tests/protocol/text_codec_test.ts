import assert from "node:assert/strict";
import { ProtocolError } from "../../core/errors.ts";
import type { FromRunnerText, ToRunnerText } from "../../protocol/messages.ts";
import {
  encodeLine,
  formatManagerLine,
  formatRunnerLine,
  isAcceptedVersion,
  parseManagerLine,
  parseRunnerLine,
  whyNotCarriable,
} from "../../protocol/text_codec.ts";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { chunkedSource, CHUNKINGS, concat } from "../helpers/chunked_source.ts";

const runnerGood: [line: string, msg: FromRunnerText][] = [
  ["SALUTON; MI node-1.example", { kind: "hail", host: "node-1.example" }],
  ["SALUTON; MI a host with spaces", { kind: "hail", host: "a host with spaces" }],
  ["KOMPRENAS", { kind: "komprenas" }],
  ["PETO", { kind: "peto" }],
  ["FINO ANKAU", { kind: "finoAnkau" }],
  ["REZULTO echo hi 0 3", { kind: "rezulto", job: "echo hi", status: 0, size: 3 }],
  ["REZULTO  two  spaces  255 0", { kind: "rezulto", job: " two  spaces ", status: 255, size: 0 }],
  ["REZULTO printf '%s' \"a b\" 137 18446744", {
    kind: "rezulto",
    job: "printf '%s' \"a b\"",
    status: 137,
    size: 18446744,
  }],
  ["REZULTO x 1 0", { kind: "rezulto", job: "x", status: 1, size: 0 }],
];

const runnerBad: string[] = [
  "",
  "HELLO",
  "SALUTON;MI host",
  "SALUTON; MI ",
  "peto",
  "PETO ",
  "FINO",
  "REZULTO",
  "REZULTO 0 0",
  "REZULTO x 256 0",
  "REZULTO x -1 0",
  "REZULTO x 0 -5",
  "REZULTO x 0 1e3",
  "REZULTO x 0 99999999999999999999",
  "REZULTO x 00000 0",
];

Deno.test({
  name: "parseRunnerLine() reads every runner message, status and size being the last two tokens",
  permissions: "none",
  fn() {
    for (const [line, msg] of runnerGood) {
      assert.deepEqual(parseRunnerLine(line), msg, line);
      assert.equal(formatRunnerLine(msg), line.startsWith("SALUTON") ? line : formatRunnerLine(parseRunnerLine(line)));
    }
  },
});

Deno.test({
  name: "parseRunnerLine() rejects malformed lines with the offending text",
  permissions: "none",
  fn() {
    for (const line of runnerBad) {
      assert.throws(() => parseRunnerLine(line), ProtocolError, JSON.stringify(line));
    }
    assert.throws(() => parseRunnerLine("GARBAGE here"), /Unknown runner message: "GARBAGE here"/);
  },
});

Deno.test({
  name: "formatRunnerLine() and parseRunnerLine() round-trip job names with spaces, quotes and unicode",
  permissions: "none",
  fn() {
    for (const job of ["a", "  lead", "trail  ", "a  b   c", `echo "x y" 'z'`, "ĉu ŝi? ✓", "REZULTO 1 2"]) {
      const msg: FromRunnerText = { kind: "rezulto", job, status: 42, size: 1234567890123 };
      assert.deepEqual(parseRunnerLine(formatRunnerLine(msg)), msg);
    }
  },
});

Deno.test({
  name: "parseManagerLine() reads a reply by what the runner expects",
  permissions: "none",
  fn() {
    const cases: [string, Parameters<typeof parseManagerLine>[1], ToRunnerText][] = [
      ["VERSIO 1.1", "versio", { kind: "versio", version: "1.1" }],
      ["FINO", "job", { kind: "fino" }],
      ["echo hi", "job", { kind: "job", name: "echo hi" }],
      ["PRETA", "job", { kind: "job", name: "PRETA" }],
      ["VERSIO 1.1", "job", { kind: "job", name: "VERSIO 1.1" }],
      ["FINO ANKAU", "job", { kind: "job", name: "FINO ANKAU" }],
      ["PRETA", "preta", { kind: "preta" }],
      ["RICEVIS", "ricevis", { kind: "ricevis" }],
      ["ERARO unknown job", "preta", { kind: "eraro", reason: "unknown job" }],
      ["ERARO too big", "job", { kind: "eraro", reason: "too big" }],
    ];
    for (const [line, expect, msg] of cases) assert.deepEqual(parseManagerLine(line, expect), msg, line);
    for (
      const [line, expect] of [["VERSIO", "versio"], ["", "job"], ["RICEVIS", "preta"], ["OK", "ricevis"]] as const
    ) {
      assert.throws(() => parseManagerLine(line, expect), ProtocolError, line);
    }
  },
});

Deno.test({
  name: "formatManagerLine() writes ERARO on one line whatever the reason holds",
  permissions: "none",
  fn() {
    assert.equal(formatManagerLine({ kind: "eraro", reason: "a\nb\r\nc" }), "ERARO a b c");
    assert.equal(formatManagerLine({ kind: "versio", version: "1.1" }), "VERSIO 1.1");
  },
});

Deno.test({
  name: "isAcceptedVersion() accepts any 1.x and nothing else",
  permissions: "none",
  fn() {
    for (const v of ["1.0", "1.1", "1.12"]) assert.ok(isAcceptedVersion(v), v);
    for (const v of ["2.0", "1", "1.x", "01.1", " 1.1", "1.1 "]) assert.ok(!isAcceptedVersion(v), v);
  },
});

Deno.test({
  name: "whyNotCarriable() refuses what one protocol line cannot carry",
  permissions: "none",
  fn() {
    assert.equal(whyNotCarriable("echo FINO", 65536), undefined);
    assert.equal(whyNotCarriable("FINO ANKAU", 65536), undefined);
    assert.match(whyNotCarriable("FINO", 65536)!, /FINO/);
    // A pulse in the vico extension: a job of that name would be taken for one.
    assert.match(whyNotCarriable("PULSO", 65536)!, /PULSO/);
    assert.equal(whyNotCarriable("PULSO x", 65536), undefined);
    assert.match(whyNotCarriable("", 65536)!, /empty/);
    assert.match(whyNotCarriable("a\rb", 65536)!, /line break/);
    assert.match(whyNotCarriable("ERARO x", 65536)!, /ERARO/);
    assert.match(whyNotCarriable("a\0b", 65536)!, /NUL/);
    assert.match(whyNotCarriable("x".repeat(70000), 65536)!, /too long/);
    assert.equal(whyNotCarriable("é".repeat(30000), 65536), undefined, "60,000 bytes fit");
    assert.match(whyNotCarriable("é".repeat(33000), 65536)!, /too long/);
  },
});

Deno.test({
  name: "text codec decodes a whole manager-side session in every chunking",
  permissions: "none",
  async fn(t) {
    const output = new Uint8Array([0, 255, 10, 13, 0xc3]);
    const wire = concat(
      "SALUTON; MI n1\n",
      "KOMPRENAS\r\n",
      "PETO\n",
      "REZULTO printf '\\000\\377' 0 5\n",
      output,
      "FINO ANKAU\n",
    );
    for (const [name, chunking] of CHUNKINGS) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(wire, chunking));
        const seen: FromRunnerText[] = [];
        let body: Uint8Array | undefined;
        for (let line = await r.readLine(); line !== null; line = await r.readLine()) {
          const msg = parseRunnerLine(line);
          seen.push(msg);
          if (msg.kind === "rezulto") {
            const parts: Uint8Array[] = [];
            await r.pipeExact(msg.size, (c) => void parts.push(c.slice()));
            body = concat(...parts);
          }
        }
        assert.deepEqual(seen.map((m) => m.kind), ["hail", "komprenas", "peto", "rezulto", "finoAnkau"]);
        assert.deepEqual(body, output);
      });
    }
  },
});

Deno.test({
  name: "encodeLine() terminates with \\n and encodes UTF-8",
  permissions: "none",
  fn() {
    assert.deepEqual(encodeLine("ĉ"), new Uint8Array([0xc4, 0x89, 0x0a]));
  },
});
