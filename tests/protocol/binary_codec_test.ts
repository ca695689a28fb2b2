import assert from "node:assert/strict";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import {
  encodeFromNode,
  encodeToNode,
  isAcceptedBinaryVersion,
  MAX_FRAME_PAYLOAD,
  readFromNode,
  readToNode,
} from "../../protocol/binary_codec.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import type { FromNode, ToNode } from "../../protocol/messages.ts";
import { whyBadTaskPath } from "../../protocol/task_path.ts";
import { chunkedSource, CHUNKINGS, concat } from "../helpers/chunked_source.ts";

const hex = (...bytes: number[]) => new Uint8Array(bytes);
const enc = new TextEncoder();

Deno.test({
  name: "encodeToNode() and encodeFromNode() write the notes' layouts byte for byte",
  permissions: "none",
  fn() {
    const cases: [Uint8Array, Uint8Array][] = [
      [encodeFromNode({ kind: "join", version: "1.0", modules: [] }), concat(hex(0x03, 0, 0, 0, 4), "1.0;")],
      [
        encodeFromNode({ kind: "join", version: "1.0", modules: ["sh", "python3"] }),
        concat(hex(0x03, 0, 0, 0, 14), "1.0;sh,python3"),
      ],
      [encodeToNode({ kind: "accept" }), hex(0x01)],
      [encodeToNode({ kind: "reject", reason: "no" }), concat(hex(0x02, 0, 0, 0, 2), "no")],
      [encodeToNode({ kind: "statusRequest" }), hex(0x05)],
      [encodeFromNode({ kind: "status", value: 4 }), hex(0x05, 0x04)],
      [encodeToNode({ kind: "file", name: "a/b", size: 258 }), concat(hex(0x13, 0, 3), "a/b", hex(0, 0, 1, 2))],
      [encodeToNode({ kind: "run", program: "p.sh", log: "l" }), concat(hex(0x14, 0, 4), "p.sh", hex(0, 1), "l")],
      [encodeToNode({ kind: "ret", name: "o" }), concat(hex(0x15, 0, 1), "o")],
      [encodeToNode({ kind: "wait" }), hex(0x07)],
      [encodeToNode({ kind: "start" }), hex(0x08)],
      [encodeToNode({ kind: "stop" }), hex(0x09)],
      [
        encodeFromNode({ kind: "started", time: "2026-11-22T16:32:33.109Z" }),
        concat(hex(0x01, 0, 0, 0, 24), "2026-11-22T16:32:33.109Z"),
      ],
      [encodeFromNode({ kind: "finished", status: 137 }), hex(0x10, 137)],
      [encodeFromNode({ kind: "result", size: 5, missing: false }), hex(0x11, 0, 0, 0, 5)],
      [encodeFromNode({ kind: "result", size: 0, missing: true }), hex(0x11, 0xff, 0xff, 0xff, 0xff)],
      [encodeFromNode({ kind: "leave" }), hex(0x04)],
      [encodeFromNode({ kind: "disconnect", reason: "bye" }), concat(hex(0x12, 0, 0, 0, 3), "bye")],
    ];
    for (const [got, want] of cases) assert.deepEqual(got, want);
  },
});

const toNode: [ToNode, Uint8Array?][] = [
  [{ kind: "accept" }],
  [{ kind: "reject", reason: "ŝi ne" }],
  [{ kind: "statusRequest" }],
  [{ kind: "file", name: "dir/sub/data.bin", size: 6 }, hex(0, 1, 2, 0xff, 0x0a, 0x13)],
  [{ kind: "file", name: "empty", size: 0 }, hex()],
  [{ kind: "run", program: "run.sh", log: "logs/run.log" }],
  [{ kind: "ret", name: "out/result.csv" }],
  [{ kind: "wait" }],
  [{ kind: "start" }],
  [{ kind: "stop" }],
  [{ kind: "disconnect", reason: "no more tasks" }],
];

Deno.test({
  name: "readToNode() decodes every owner frame in every chunking, leaving File payloads to the caller",
  permissions: "none",
  async fn(t) {
    const wire = concat(...toNode.flatMap(([m, payload]) => [encodeToNode(m), payload ?? hex()]));
    for (const [name, chunking] of CHUNKINGS) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(wire, chunking));
        for (const [want, payload] of toNode) {
          const got = await readToNode(r, DEFAULT_LIMITS);
          assert.deepEqual(got, want);
          if (got?.kind === "file") assert.deepEqual(await r.readExact(got.size), payload);
        }
        assert.equal(await readToNode(r, DEFAULT_LIMITS), null);
      });
    }
  },
});

const fromNode: [FromNode, Uint8Array?][] = [
  [{ kind: "join", version: "1.0", modules: ["a", "b"] }],
  [{ kind: "join", version: "1.0", modules: [] }],
  [{ kind: "accept" }],
  [{ kind: "status", value: 1 }],
  [{ kind: "reject", reason: 'name "../x" has a ".." segment' }],
  [{ kind: "started", time: "2026-11-22T16:32:33.109Z" }],
  [{ kind: "finished", status: 0 }],
  [{ kind: "result", size: 3, missing: false }, enc.encode("a\0b")],
  [{ kind: "result", size: 0, missing: true }],
  [{ kind: "result", size: 0, missing: false }, hex()],
  [{ kind: "leave" }],
  [{ kind: "disconnect", reason: "bye" }],
];

Deno.test({
  name: "readFromNode() decodes every node frame in every chunking, Start's Accept with its time",
  permissions: "none",
  async fn(t) {
    const wire = concat(...fromNode.flatMap(([m, payload]) => [encodeFromNode(m), payload ?? hex()]));
    for (const [name, chunking] of CHUNKINGS) {
      await t.step(name, async () => {
        const r = new BufferedReader(chunkedSource(wire, chunking));
        for (const [want, payload] of fromNode) {
          const got = await readFromNode(r, DEFAULT_LIMITS, want.kind === "started");
          assert.deepEqual(got, want);
          if (got?.kind === "result" && !got.missing) assert.deepEqual(await r.readExact(got.size), payload);
        }
        assert.equal(await readFromNode(r, DEFAULT_LIMITS), null);
      });
    }
  },
});

Deno.test({
  name: "binary codec refuses reserved and unknown types and lengths over the limits before allocating",
  permissions: "none",
  async fn() {
    const read = (bytes: Uint8Array, side: "toNode" | "fromNode", limits = DEFAULT_LIMITS) => {
      const r = new BufferedReader(chunkedSource(bytes, 3));
      return side === "toNode" ? readToNode(r, limits) : readFromNode(r, limits);
    };
    await assert.rejects(read(hex(0x06), "toNode"), /Task \(0x06\) is reserved/);
    await assert.rejects(read(hex(0x06), "fromNode"), /Task \(0x06\) is reserved/);
    await assert.rejects(read(hex(0x03, 0, 0, 0, 0), "toNode"), /Unexpected frame type JOIN from the owner/);
    await assert.rejects(read(hex(0x13, 0, 0, 0, 0, 0, 0), "fromNode"), /Unexpected frame type FILE from the node/);
    await assert.rejects(read(hex(0x7f), "fromNode"), /Unexpected frame type 0x7f/);
    // A reason claiming 4 GiB: refused from the length alone.
    await assert.rejects(
      read(hex(0x02, 0xff, 0xff, 0xff, 0xfe), "fromNode"),
      /Reject reason of 4294967294 bytes exceeds/,
    );
    const small = { ...DEFAULT_LIMITS, maxFileBytes: 1000 };
    await assert.rejects(
      read(concat(hex(0x13, 0, 1), "x", hex(0, 0, 0x03, 0xe9)), "toNode", small),
      /exceeds the limit of 1000/,
    );
    await assert.rejects(read(hex(0x11, 0, 0, 0x03, 0xe9), "fromNode", small), /Result of 1001 bytes exceeds/);
    await assert.rejects(read(concat(hex(0x03, 0, 0, 0, 3), "1.0"), "fromNode"), /Join is not <version>;<modules>/);
    await assert.rejects(read(concat(hex(0x12, 0, 0, 0, 2), hex(0xc3, 0x28)), "fromNode"), /not valid UTF-8/);
    await assert.rejects(read(hex(0x13, 0, 5, 0x61), "toNode"), /Connection closed after/);
    assert.equal(MAX_FRAME_PAYLOAD, 0xfffffffe);
  },
});

Deno.test({
  name: "isAcceptedBinaryVersion() accepts any 1.x",
  permissions: "none",
  fn() {
    assert.ok(isAcceptedBinaryVersion("1.0"));
    assert.ok(isAcceptedBinaryVersion("1.4"));
    assert.ok(!isAcceptedBinaryVersion("2.0"));
    assert.ok(!isAcceptedBinaryVersion("1"));
  },
});

Deno.test({
  name: "whyBadTaskPath() accepts relative paths inside the task directory and nothing else",
  permissions: "none",
  fn() {
    for (const ok of ["a", "a/b/c.txt", "..a", "a..", ".hidden", "a b/ĉ"]) {
      assert.equal(whyBadTaskPath(ok), undefined, ok);
    }
    for (const bad of ["", "/etc/passwd", "../x", "a/../b", "a/./b", ".", "a//b", "a/", "a\\b", "a\0b", ".."]) {
      assert.notEqual(whyBadTaskPath(bad), undefined, JSON.stringify(bad));
    }
  },
});
