/**
 * Shared by the fuzz tests: run counts and seed, the corpus of recorded
 * valid sessions, and the mutations applied to them.
 *
 * `deno task test` runs a short, seeded pass (reproducible in CI);
 * `deno task fuzz` a long one with a fresh seed, printed so that a failure
 * can be replayed with VICO_FUZZ_SEED.
 *
 * @module
 */

import fc from "fast-check";

const long = Deno.env.get("VICO_FUZZ_RUNS") !== undefined;
/** Runs per property. */
export const RUNS = Number(Deno.env.get("VICO_FUZZ_RUNS") ?? "60");
/** The seed: fixed for the short pass, fresh for the long one (override with VICO_FUZZ_SEED). */
export const SEED = Number(Deno.env.get("VICO_FUZZ_SEED") ?? (long ? Date.now() % 2 ** 31 : 20261123));
if (long) console.log(`fuzz: ${RUNS} runs per property, seed ${SEED} (replay with VICO_FUZZ_SEED=${SEED})`);

/** fast-check parameters for every property (a long pass raises every count to RUNS). */
export function params(runs = RUNS): fc.Parameters<unknown> {
  return { numRuns: long ? Math.max(runs, RUNS) : runs, seed: SEED, endOnFailure: true };
}

/** A recorded session from tests/fuzz/corpus/. */
export interface CorpusEntry {
  name: string;
  description: string;
  to: "manager" | "node" | "runner";
  bytes: Uint8Array;
}

const enc = new TextEncoder();

/** Loads every corpus entry sent to `to`. */
export function corpus(to: CorpusEntry["to"]): CorpusEntry[] {
  const dir = new URL("./corpus/", import.meta.url);
  const out: CorpusEntry[] = [];
  for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.name.endsWith(".json")) continue;
    const raw = JSON.parse(Deno.readTextFileSync(new URL(entry.name, dir)));
    if (raw.to !== to) continue;
    const parts: Uint8Array[] = raw.chunks !== undefined
      ? raw.chunks.map((c: string) => enc.encode(c))
      : raw.hex.map((h: string) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16)));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.length;
    }
    out.push({ name: entry.name, description: raw.description, to, bytes });
  }
  return out;
}

/** One edit of a byte string. */
type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; len: number }
  | { op: "duplicate"; at: number; len: number }
  | { op: "truncate"; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    op: fc.constant("set" as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 0x0a, 0x0d, 0x20, 0xff, 0x7f, 0x06, 0x13),
  }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ op: fc.constant("duplicate" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
);

function apply(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.length;
  const at = n === 0 ? 0 : m.at % (n + 1);
  switch (m.op) {
    case "flip": {
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[at % n] ^= 1 << m.bit;
      return out;
    }
    case "set": {
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[at % n] = m.value;
      return out;
    }
    case "insert":
      return concat(bytes.subarray(0, at), m.bytes, bytes.subarray(at));
    case "delete":
      return concat(bytes.subarray(0, at), bytes.subarray(Math.min(n, at + m.len)));
    case "duplicate":
      return concat(bytes.subarray(0, at + Math.min(m.len, n - at)), bytes.subarray(at));
    case "truncate":
      return bytes.subarray(0, at);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((k, p) => k + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A corpus entry with 0-6 mutations applied (shrinks toward the recorded session). */
export function mutatedSession(entries: CorpusEntry[]): fc.Arbitrary<{ name: string; bytes: Uint8Array }> {
  return fc.record({
    entry: fc.constantFrom(...entries),
    edits: fc.array(mutation, { maxLength: 6 }),
  }).map(({ entry, edits }) => ({ name: entry.name, bytes: edits.reduce(apply, entry.bytes) }));
}

/** Splits bytes into chunks of the sizes given (cycled). */
export function chunked(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length] ?? bytes.length);
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}
