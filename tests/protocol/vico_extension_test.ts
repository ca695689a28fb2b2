import assert from "node:assert/strict";
import { ProtocolError } from "../../core/errors.ts";
import {
  ACK_TAG_PREFIX,
  formatAck,
  formatClientHello,
  formatServerHello,
  formatTag,
  JOB_TAG_PREFIX,
  parseAck,
  parseClientHello,
  parseServerHello,
  parseTag,
  PIPE_FEATURE,
  splitJobSeq,
  TAG_FEATURE,
} from "../../protocol/vico_extension.ts";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { chunkedSource, CHUNKINGS, concat } from "../helpers/chunked_source.ts";
import { SIXTEEN_GIB } from "../../core/limits.ts";

Deno.test("formatServerHello/parseServerHello: maxout carries the manager's output limit, up to 16 GiB and beyond", () => {
  for (const maxOutput of [1, 1000, SIXTEEN_GIB, Number.MAX_SAFE_INTEGER]) {
    const line = formatServerHello({ kind: "ok", pulse: 10, maxOutput });
    assert.match(line, new RegExp(` maxout=${maxOutput}$`));
    const back = parseServerHello(line);
    assert.equal(back.kind === "ok" && back.maxOutput, maxOutput);
  }
  const plain = parseServerHello("VICO/1 ok pulse=10");
  assert.equal(plain.kind === "ok" && plain.maxOutput, undefined);
});

Deno.test("parseServerHello: a malformed or absurd maxout is a protocol error", () => {
  for (const bad of ["maxout=", "maxout=-1", "maxout=1e9", "maxout=12345678901234567", "maxout=9007199254740992"]) {
    assert.throws(() => parseServerHello(`VICO/1 ok ${bad}`), ProtocolError, bad);
  }
});

Deno.test("formatServerHello/parseServerHello: pipe=1 is carried beside tag=1, and refused without it", () => {
  const line = formatServerHello({ kind: "ok", pulse: 10, tag: 1, pipe: 1 });
  assert.equal(line, "VICO/1 ok pulse=10 tag=1 pipe=1");
  const back = parseServerHello(line);
  assert.equal(back.kind === "ok" && back.pipe, 1);
  const lockStep = parseServerHello("VICO/1 ok pulse=10 tag=1");
  assert.equal(lockStep.kind === "ok" && lockStep.pipe, undefined);
  for (const bad of ["pipe=1", "tag=0 pipe=1", "tag=1 pipe=2", "tag=1 pipe="]) {
    assert.throws(() => parseServerHello(`VICO/1 ok ${bad}`), ProtocolError, bad);
  }
});

Deno.test("formatServerHello/parseServerHello: ahead=0 rides beside pipe=1 only; absent means a runner may ask ahead", () => {
  const line = formatServerHello({ kind: "ok", tag: 1, pipe: 1, ahead: 0 });
  assert.equal(line, "VICO/1 ok tag=1 pipe=1 ahead=0");
  const back = parseServerHello(line);
  assert.equal(back.kind === "ok" && back.ahead, 0);
  assert.equal(formatServerHello({ kind: "ok", tag: 1, ahead: 0 }), "VICO/1 ok tag=1", "not without pipe=1");
  const plain = parseServerHello("VICO/1 ok tag=1 pipe=1");
  assert.equal(plain.kind === "ok" && plain.ahead, undefined);
  for (const bad of ["tag=1 pipe=1 ahead=2", "tag=1 pipe=1 ahead="]) {
    assert.throws(() => parseServerHello(`VICO/1 ok ${bad}`), ProtocolError, bad);
  }
});

Deno.test("parseClientHello: want=tag,pipe names both features", () => {
  const h = parseClientHello("VICO/1 hello proto=text id=n1 want=pulse,tag,pipe");
  assert.deepEqual(h.want, ["pulse", TAG_FEATURE, PIPE_FEATURE]);
  assert.equal(formatClientHello(h), "VICO/1 hello proto=text id=n1 want=pulse,tag,pipe");
});

Deno.test("formatAck/parseAck: VICO/1 ack <tag>, exactly the three tag fields", () => {
  const tag = { run: "0123456789abcdef0123456789abcdef", key: "ab12-1", attempt: 3 };
  const line = formatAck(tag);
  assert.equal(line, "VICO/1 ack run=0123456789abcdef0123456789abcdef key=ab12-1 attempt=3");
  assert.deepEqual(parseAck(line), tag);
  for (
    const bad of [
      "VICO/1 ack",
      "VICO/1 ack ",
      "VICO/1 ack run=r key=k",
      "VICO/1 ack run=r key=k attempt=0",
      "VICO/1 ack run=r key=k attempt=1 seq=4",
      "VICO/1 ack run=r key=k attempt=1 timedout=1",
      "VICO/1 acks run=r key=k attempt=1",
      "VICO/1 result run=r key=k attempt=1",
    ]
  ) {
    assert.throws(() => parseAck(bad), ProtocolError, bad);
  }
});

Deno.test("parseAck: an interleaved pipe stream read one byte at a time gives the same acks, jobs and pulses", async () => {
  // What a pipelined manager may send: answers to PETOs, acks and pulses interleaved.
  const tags = [1, 2, 3].map((attempt) => ({ run: "r1", key: `k-${attempt}`, attempt }));
  const stream = concat(
    `${JOB_TAG_PREFIX}${formatTag(tags[0])} seq=1\n`,
    "echo one\n",
    `${formatAck(tags[0])}\n`,
    "PULSO\n",
    `${JOB_TAG_PREFIX}${formatTag(tags[1])} seq=2\n`,
    "echo two\r\n",
    `${formatAck(tags[1])}\n`,
    `${formatAck(tags[2])}\n`,
    "FINO\n",
  );
  for (const [name, chunking] of CHUNKINGS) {
    const reader = new BufferedReader(chunkedSource(stream, chunking));
    const seen: string[] = [];
    for (let line = await reader.readLine(); line !== null; line = await reader.readLine()) {
      if (line.startsWith(ACK_TAG_PREFIX)) seen.push(`ack ${parseAck(line).attempt}`);
      else if (line.startsWith(JOB_TAG_PREFIX)) {
        const { tag, seq } = splitJobSeq(line.slice(JOB_TAG_PREFIX.length));
        seen.push(`job ${parseTag(tag).attempt} seq ${seq}`);
      } else seen.push(line);
    }
    assert.deepEqual(seen, [
      "job 1 seq 1",
      "echo one",
      "ack 1",
      "PULSO",
      "job 2 seq 2",
      "echo two",
      "ack 2",
      "ack 3",
      "FINO",
    ], name);
  }
});

Deno.test({
  name: "parseTag() takes run, key and attempt and keeps the rest as sent; a malformed tag names its bad field",
  permissions: "none",
  fn() {
    assert.deepEqual(parseTag("run=r1 key=ab12-1 attempt=2"), { run: "r1", key: "ab12-1", attempt: 2, rest: "" });
    assert.deepEqual(parseTag("run=r key=k attempt=1 timedout"), { run: "r", key: "k", attempt: 1, rest: "timedout" });
    assert.deepEqual(parseTag("run=r key=k attempt=1  a b"), { run: "r", key: "k", attempt: 1, rest: " a b" });
    assert.equal(parseTag(`run=${"x".repeat(128)} key=k attempt=999999999`).attempt, 999999999);
    const bad: [string, RegExp][] = [
      ["key=k run=r attempt=1", /field run/],
      ["run=r key= attempt=1", /field key/],
      [`run=${"x".repeat(129)} key=k attempt=1`, /field run/],
      ["run=r key=k/1 attempt=1", /field key/],
      ["run=r key=k", /field attempt/],
      ["run=r key=k attempt=01", /positive whole number/],
      ["run=r key=k attempt=1000000000", /positive whole number/],
      ["run=r  key=k attempt=1", /field attempt/],
    ];
    for (const [text, reason] of bad) {
      assert.throws(() => parseTag(text), (e) => e instanceof ProtocolError && reason.test(e.message), text);
    }
  },
});

Deno.test("formatServerHello/parseServerHello: have= names the dropped held lines the manager already recorded", () => {
  const line = formatServerHello({ kind: "ok", pulse: 10, drop: [0, 2, 3], have: [2] });
  assert.match(line, / drop=0,2,3 have=2$/);
  const back = parseServerHello(line);
  assert.ok(back.kind === "ok");
  assert.deepEqual(back.drop, [0, 2, 3]);
  assert.deepEqual(back.have, [2]);
  const none = parseServerHello(formatServerHello({ kind: "ok", drop: [1] }));
  assert.ok(none.kind === "ok" && none.have === undefined);
});
