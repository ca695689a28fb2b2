/**
 * `manager verify`: re-reads a results directory and checks that every file
 * a journal record points to exists with the recorded size and SHA-256.
 * Read-only: a torn last record is reported, not cut; damage before the last
 * line is a problem, and the journal is not read past it.
 *
 * It also checks the journal's one rule about keys: one settling `job`
 * record per key, and after a `reopen` record of the key (`--resume-failed`)
 * one more at most. A second settlement with no reopen before it, or a
 * reopen of a key that is not settled, is a problem at its line. An earlier
 * attempt's files are checked like any other: a re-run that overwrote them
 * would show here.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { JournalDamagedError } from "../../core/errors.ts";
import { type JournalEntry, readJournal } from "../../io/journal_reader.ts";
import { whyBadTaskPath } from "../../protocol/task_path.ts";
import { JOURNAL_FILE, type JournalRecord } from "./results_store.ts";

/** One thing wrong in a results directory. */
export interface VerifyProblem {
  /** Journal line of the record. */
  line: number;
  /** The file (relative to the results directory), or the journal itself. */
  path: string;
  /** What is wrong. */
  problem: string;
}

/** What {@linkcode verifyResults} found. */
export interface VerifyReport {
  /** Job and attempt records read. */
  records: number;
  /** Files checked. */
  files: number;
  /** Bytes hashed. */
  bytes: number;
  /** Everything that does not match. */
  problems: VerifyProblem[];
  /** The last line was torn (a crash mid-append); the manager cuts it on its next start. */
  tornTail: boolean;
}

/** Checks every stored output and returned file of a results directory against its journal. */
export async function verifyResults(dir: string): Promise<VerifyReport> {
  const report: VerifyReport = { records: 0, files: 0, bytes: 0, problems: [], tornTail: false };
  /** Keys settled (and not reopened since). */
  const settled = new Set<string>();
  /** Directories on the way to stored files found to be directories (not links). */
  const plainDirs = new Set<string>();
  /** Records whose files had a problem, by line: checked again at the end (see {@linkcode stillRecorded}). */
  const suspect = new Map<number, JournalEntry>();
  const checkRecord = async (entry: JournalEntry) => {
    const { record: r, line } = entry;
    const record = r as unknown as JournalRecord;
    if (record.type === "reopen") {
      if (!settled.delete(record.key)) {
        report.problems.push({ line, path: JOURNAL_FILE, problem: `reopens ${record.key}, which is not settled` });
      }
      return;
    }
    if (record.type !== "job" && record.type !== "attempt") return;
    if (record.type === "job") {
      if (settled.has(record.key)) {
        report.problems.push({
          line,
          path: JOURNAL_FILE,
          problem: `settles ${record.key} a second time, with no reopen record before it`,
        });
      }
      settled.add(record.key);
    }
    report.records++;
    const files: { path: string | null; size: number; sha256?: string; missing?: true }[] = [
      { path: record.output, size: record.size, sha256: record.sha256 },
    ];
    if (record.type === "job") files.push(...(record.files ?? []));
    for (const f of files) {
      if (f.missing || f.path === null) continue;
      report.files++;
      const problem = await check(dir, String(f.path), f.size, f.sha256, report, plainDirs);
      if (problem !== undefined) {
        report.problems.push({ line, path: f.path, problem });
        suspect.set(line, entry);
      }
    }
  };
  const journal = join(dir, JOURNAL_FILE);
  try {
    const tail = await readJournal(journal, checkRecord);
    report.tornTail = tail.torn !== undefined;
  } catch (err) {
    // Damage before the last line: nothing after it can be trusted.
    if (!(err instanceof JournalDamagedError)) throw err;
    report.problems.push({ line: err.line, path: JOURNAL_FILE, problem: "record does not parse" });
  }
  // A manager appending meanwhile may have cut a record back (its write
  // failed) and removed its files: that record never was, and is no problem.
  for (const [line, entry] of suspect) {
    if (!(await stillRecorded(journal, entry))) {
      report.problems = report.problems.filter((p) => p.line !== line || p.path === JOURNAL_FILE);
      report.records--;
    }
  }
  return report;
}

/** Whether the journal still holds `entry` where it was read (it was not cut back and written over). */
async function stillRecorded(path: string, entry: JournalEntry): Promise<boolean> {
  const bytes = new Uint8Array(entry.end - entry.offset);
  try {
    using file = await Deno.open(path, { read: true });
    await file.seek(entry.offset, Deno.SeekMode.Start);
    for (let at = 0; at < bytes.length;) {
      const n = await file.read(bytes.subarray(at));
      if (n === null) return false;
      at += n;
    }
    return JSON.stringify(JSON.parse(new TextDecoder().decode(bytes))) === JSON.stringify(entry.record);
  } catch {
    return false;
  }
}

/**
 * What is wrong with the file a record names at `path` (relative to `dir`),
 * or `undefined`. Only a plain file inside the directory, reached through
 * directories (no link on the way), is opened and hashed, and only when its
 * size is the recorded one: a link, a FIFO or a device there (planted, or
 * not vico's) is a problem, never followed or read (a FIFO would block the
 * read for ever, a link to `/dev/zero` never end it).
 */
async function check(
  dir: string,
  path: string,
  size: number,
  sha256: string | undefined,
  report: VerifyReport,
  plainDirs: Set<string>,
): Promise<string | undefined> {
  if (whyBadTaskPath(path) !== undefined) return "outside the results directory (not a relative path within it)";
  const parts = path.split("/");
  let at = dir;
  for (const part of parts.slice(0, -1)) {
    at = join(at, part);
    if (plainDirs.has(at)) continue;
    const info = await Deno.lstat(at).catch(() => undefined);
    if (info === undefined) return "missing";
    if (!info.isDirectory) return `not a plain file: ${relative(dir, at)} is not a directory (a link, or a file)`;
    plainDirs.add(at);
  }
  const full = join(dir, path);
  const info = await Deno.lstat(full).catch(() => undefined);
  if (info === undefined) return "missing";
  if (!info.isFile) return "not a plain file (a link, a FIFO, a directory or a device)";
  if (info.size !== size) return `size ${info.size}, recorded ${size}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(full, { read: true });
  } catch {
    return "missing";
  }
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of file.readable) {
      hash.update(chunk);
      bytes += chunk.length;
    }
  } catch (err) {
    return `unreadable: ${(err as Error).message}`;
  }
  report.bytes += bytes;
  if (bytes !== size) return `size ${bytes}, recorded ${size}`;
  const digest = hash.digest("hex");
  if (sha256 !== undefined && digest !== sha256) return `SHA-256 ${digest}, recorded ${sha256}`;
  return undefined;
}
