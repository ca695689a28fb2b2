/**
 * Reads a results directory the way a user's script would.
 *
 * @module
 */

import { join } from "node:path";
import type { JobRecord, JournalRecord } from "../../manager/results/results_store.ts";

/** Every record of a results directory's journal, in order. */
export function readJournal(resultsDir: string): JournalRecord[] {
  const text = Deno.readTextFileSync(join(resultsDir, "journal.jsonl"));
  return text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

/** The settled-job records of a results directory, in journal order. */
export function readRecords(resultsDir: string): JobRecord[] {
  return readJournal(resultsDir).filter((r): r is JobRecord => r.type === "job");
}

/** The stored output of a record (empty when it has no file). */
export function readOutput(resultsDir: string, record: JobRecord): Uint8Array {
  return record.output === null ? new Uint8Array() : Deno.readFileSync(join(resultsDir, record.output));
}

/** Records by their 1-based line in the job list (asserting one per line). */
export function byLine(records: JobRecord[]): Map<number, JobRecord> {
  const map = new Map<number, JobRecord>();
  for (const r of records) {
    if (map.has(r.line)) throw new Error(`line ${r.line} recorded twice`);
    map.set(r.line, r);
  }
  return map;
}

/** A fresh temporary directory removed at disposal. */
export async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "vico-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Writes a journal of `count` job records of about `bytes` bytes each (ten
 * keys, settled again and again), in 1 MiB writes.
 */
export async function writeBigJournal(path: string, count: number, bytes: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const pad = "x".repeat(Math.max(0, bytes - 60));
  let batch = "";
  for (let i = 0; i < count; i++) {
    batch += JSON.stringify({ type: "job", key: `k-${i % 10}`, status: 0, pad }) + "\n";
    if (batch.length >= 1 << 20 || i === count - 1) {
      const chunk = new TextEncoder().encode(batch);
      for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
      batch = "";
    }
  }
}
