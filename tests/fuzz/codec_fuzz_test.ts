/**
 * Property-based fuzzing of the codecs (fast-check): arbitrary input never
 * throws anything but a ProtocolError (or a closed-connection VicoError),
 * and valid messages survive encode → decode in any chunking.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { BufferedReader } from "../../protocol/buffered_reader.ts";
import { encodeToNode, readFromNode, readToNode } from "../../protocol/binary_codec.ts";
import { ProtocolError, VicoError } from "../../core/errors.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import type { FromNode, FromRunnerText, RunnerExpectation, ToNode } from "../../protocol/messages.ts";
import { formatRunnerLine, parseManagerLine, parseRunnerLine } from "../../protocol/text_codec.ts";
import { formatClientHello, parseClientHello, parseServerHello } from "../../protocol/vico_extension.ts";
import { chunkedSource } from "../helpers/chunked_source.ts";
import { params } from "./fuzz_support.ts";

/** Only our own error types may escape a decoder. */
function expected(err: unknown): boolean {
  return err instanceof ProtocolError || (err instanceof VicoError && err.code === "CONNECTION_CLOSED");
}

const lineChar = fc.string({ unit: "grapheme", maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, " "));

Deno.test({
  name: "fuzz: text codec parses any line into a message or a ProtocolError",
  permissions: "none",
  fn() {
    const expectations: RunnerExpectation[] = ["versio", "job", "preta", "ricevis"];
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), fc.constantFrom(...expectations), (line, expect) => {
        for (const parse of [() => parseRunnerLine(line), () => parseManagerLine(line, expect)]) {
          try {
            parse();
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        }
      }),
      params(500),
    );
  },
});

Deno.test({
  name: "fuzz: runner messages round-trip through format and parse",
  permissions: "none",
  fn() {
    const message: fc.Arbitrary<FromRunnerText> = fc.oneof(
      lineChar.filter((h) => h.length > 0).map((host) => ({ kind: "hail" as const, host })),
      fc.constant({ kind: "komprenas" as const }),
      fc.constant({ kind: "peto" as const }),
      fc.constant({ kind: "finoAnkau" as const }),
      fc.record({
        kind: fc.constant("rezulto" as const),
        job: lineChar.filter((j) => j.length > 0),
        status: fc.integer({ min: 0, max: 255 }),
        size: fc.maxSafeNat(),
      }),
    );
    fc.assert(
      fc.property(message, (msg) => assert.deepEqual(parseRunnerLine(formatRunnerLine(msg)), { ...msg })),
      params(500),
    );
  },
});

Deno.test({
  name: "fuzz: BufferedReader splits any bytes into the same lines whatever the chunking",
  permissions: "none",
  async fn() {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
        async (bytes, sizes) => {
          const reference: (string | Error)[] = [];
          const whole = new BufferedReader(chunkedSource(bytes, 1 << 20), { maxLineBytes: 64, bufferSize: 16 });
          const split = new BufferedReader(chunkedSource(bytes, sizes), { maxLineBytes: 64, bufferSize: 16 });
          for (const [reader, out] of [[whole, reference], [split, [] as (string | Error)[]]] as const) {
            while (true) {
              try {
                const line = await reader.readLine();
                if (line === null) break;
                out.push(line);
              } catch (err) {
                if (!expected(err)) throw err;
                out.push(err as Error);
                break;
              }
            }
            if (out !== reference) {
              assert.deepEqual(out.map(String), reference.map(String));
            }
          }
        },
      ),
      params(300),
    );
  },
});

const name = fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 });
const toNode: fc.Arbitrary<[ToNode, Uint8Array]> = fc.oneof(
  fc.constant<[ToNode, Uint8Array]>([{ kind: "accept" }, new Uint8Array()]),
  name.map((reason): [ToNode, Uint8Array] => [{ kind: "reject", reason }, new Uint8Array()]),
  fc.constant<[ToNode, Uint8Array]>([{ kind: "statusRequest" }, new Uint8Array()]),
  fc.tuple(name, fc.uint8Array({ maxLength: 50 })).map(([n, data]): [ToNode, Uint8Array] => [
    { kind: "file", name: n, size: data.length },
    data,
  ]),
  fc.tuple(name, name).map(([program, log]): [ToNode, Uint8Array] => [{ kind: "run", program, log }, new Uint8Array()]),
  name.map((n): [ToNode, Uint8Array] => [{ kind: "ret", name: n }, new Uint8Array()]),
  fc.constantFrom<[ToNode, Uint8Array]>(
    [{ kind: "wait" }, new Uint8Array()],
    [{ kind: "start" }, new Uint8Array()],
    [{ kind: "stop" }, new Uint8Array()],
  ),
  name.map((reason): [ToNode, Uint8Array] => [{ kind: "disconnect", reason }, new Uint8Array()]),
);

Deno.test({
  name: "fuzz: owner frames round-trip in any chunking",
  permissions: "none",
  async fn() {
    await fc.assert(
      fc.asyncProperty(fc.array(toNode, { maxLength: 12 }), fc.integer({ min: 1, max: 9 }), async (frames, chunk) => {
        const parts = frames.flatMap(([m, payload]) => [encodeToNode(m), payload]);
        const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let off = 0;
        for (const p of parts) {
          bytes.set(p, off);
          off += p.length;
        }
        const r = new BufferedReader(chunkedSource(bytes, chunk));
        for (const [want, payload] of frames) {
          const got = await readToNode(r, DEFAULT_LIMITS);
          assert.deepEqual(got, want);
          if (got?.kind === "file") assert.deepEqual(await r.readExact(got.size), payload);
        }
        assert.equal(await readToNode(r, DEFAULT_LIMITS), null);
      }),
      params(300),
    );
  },
});

Deno.test({
  name: "fuzz: any bytes decode as node or owner frames, or fail with a ProtocolError, within small limits",
  permissions: "none",
  async fn() {
    const limits = { maxFileBytes: 4096, maxStringBytes: 256 };
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 7 }), async (bytes, chunk) => {
        for (const side of ["toNode", "fromNode"] as const) {
          const r = new BufferedReader(chunkedSource(bytes, chunk));
          for (let i = 0; i < 50; i++) {
            try {
              const f: ToNode | FromNode | null = side === "toNode"
                ? await readToNode(r, limits)
                : await readFromNode(r, limits, i % 2 === 0);
              if (f === null) break;
              if ((f.kind === "file" || f.kind === "result") && !("missing" in f && f.missing)) {
                assert.ok(f.size <= limits.maxFileBytes, "no payload over the limit gets through");
                await r.pipeExact(f.size, () => {});
              }
            } catch (err) {
              if (!expected(err)) throw err;
              break;
            }
          }
        }
      }),
      params(500),
    );
  },
});

Deno.test({
  name: "fuzz: the extension's hello and answer parse or fail with a ProtocolError; hellos round-trip",
  permissions: "none",
  fn() {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (line) => {
        for (
          const parse of [() => parseClientHello("VICO/1 hello " + line), () => parseServerHello("VICO/1 " + line)]
        ) {
          try {
            parse();
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        }
      }),
      params(500),
    );
    const hello = fc.record({
      proto: fc.constantFrom("text" as const, "binary" as const),
      id: fc.option(fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/), { nil: undefined }),
      want: fc.array(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), { maxLength: 3 }),
      holds: fc.integer({ min: 0, max: 100 }),
      nonce: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: undefined }),
    });
    fc.assert(
      fc.property(hello, (h) => {
        const back = parseClientHello(formatClientHello(h));
        assert.deepEqual(
          { ...back, id: back.id ?? undefined, nonce: back.nonce ?? undefined },
          { ...h, id: h.id ?? undefined, nonce: h.nonce ?? undefined },
        );
      }),
      params(300),
    );
  },
});
