/**
 * The one place that writes results. A results directory holds:
 *
 * - `journal.jsonl`: one JSON record per settled job, append-only;
 * - `out/<key>.out`: each job's output, byte for byte (jobs with empty
 *   output have no file: their record says `"size": 0, "output": null`);
 *   a job re-run after a `reopen` record (`--resume-failed`) settles with
 *   `out/<key>.<attempt>.out`, so the earlier attempt's file stays as it was;
 * - `tmp/`: outputs being received, never at a final name;
 * - `.vico-results` and `.vico-lock`: the marker that the directory is vico's
 *   and the lock of the manager running on it (see `results_dir.ts`).
 *
 * A result is committed in one step: the output streams into `tmp/` while
 * being hashed, is fsynced and renamed to its final name, then its record is
 * appended to the journal and the journal fdatasynced. Records are group
 * committed: all records that arrive while one flush is in progress share
 * the next write and fdatasync.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { dirname, join } from "node:path";
import { writeAll } from "../../io/write_all.ts";
import { DirectAppender } from "../../io/direct_appender.ts";
import { readJournal as readJournalRecords } from "../../io/journal_reader.ts";
import { VicoError } from "../../core/errors.ts";
import { whyBadTaskPath } from "../../protocol/task_path.ts";
import { ResultsDir, unusable } from "./results_dir.ts";

/** One settled job, as stored in `journal.jsonl`. */
export interface JobRecord {
  /** Record type. */
  type: "job";
  /** Content key: hash of the command plus its occurrence number. */
  key: string;
  /** 1-based line of the job in its job list. */
  line: number;
  /** The command line. */
  command: string;
  /** Exit status, 0-255 (128+N for signal N, 127 could not start); `null` when lost. */
  status: number | null;
  /** Host name the runner announced. */
  host: string;
  /** When the manager handed the job out (ISO-8601 UTC). */
  start: string;
  /** When the manager received the result (ISO-8601 UTC). */
  end: string;
  /** 1 for the first hand-out, 2 after one requeue, … */
  attempt: number;
  /** Output size in bytes. */
  size: number;
  /** SHA-256 of the output, hex. */
  sha256: string;
  /** Output file relative to the results directory, or `null` when empty. */
  output: string | null;
  /** The bundle's `name`, if it has one. */
  name?: string;
  /** Files returned by a task bundle. */
  files?: FileRecord[];
  /** The binary node(s) that ran it. */
  nodes?: NodeRecord[];
  /** Why the job was given up as lost (its runners kept vanishing). */
  lost?: string;
  /** The job was stopped by `--timeout` (its status is that of the signal). */
  timedOut?: true;
}

/** An attempt that failed and will be tried again (`--retries`); not a settlement. */
export interface AttemptRecord extends Omit<JobRecord, "type" | "status" | "lost" | "nodes"> {
  /** Record type. */
  type: "attempt";
  /** Its exit status. */
  status: number;
  /**
   * Held back by the black-hole rule (a fast failure): kept, and then
   * either settles the job (a job record naming the same output and files),
   * or is retried (`--retries`), or the job runs again elsewhere (then,
   * within the run, it spends no `--retries`).
   */
  suspect?: true;
}

/** A job handed to an identified runner (one that can come back after a manager restart). */
export interface AssignRecord {
  /** Record type. */
  type: "assign";
  /** The job's key. */
  key: string;
  /** The runner's stable id. */
  runner: string;
  /** Its host name. */
  host: string;
  /** When (ISO-8601 UTC). */
  at: string;
  /** The manager run that handed it out (its `run` record's id). */
  run: string;
  /** The attempt number it went out as. */
  attempt: number;
}

/** A manager run started on this results directory. */
export interface RunRecord {
  /** Record type. */
  type: "run";
  /** The run's identity (128 random bits, hex): kept results carry it, so they are taken only by the run that issued them or a later run on the same directory. */
  id: string;
  /** When (ISO-8601 UTC). */
  started: string;
  /** The job list. */
  source: string;
  /** Jobs in the list. */
  jobs: number;
  /** Manager process id. */
  pid: number;
}

/**
 * A settled job opened again (`--resume-failed`): from this record on, the
 * key's earlier `job` record counts as a past attempt, and the key is
 * unsettled until one new `job` record settles it. Written (and durable)
 * before any job is handed out. It repeats what the reopened settlement
 * said (status, host, attempt), so a reader with bounded memory (the
 * report) can take that settlement back without remembering every key.
 */
export interface ReopenRecord {
  /** Record type. */
  type: "reopen";
  /** The job's key. */
  key: string;
  /** Its 1-based line in the job list of the run that reopened it. */
  line: number;
  /** When (ISO-8601 UTC). */
  at: string;
  /** The attempt number of the settlement it reopens (attempt numbers go on from it). */
  attempt: number;
  /** That settlement's status (`null`: lost). */
  status: number | null;
  /** That settlement's host. */
  host: string;
  /** That settlement was stopped by `--timeout`. */
  timedOut?: true;
}

/** Any journal record. */
export type JournalRecord = JobRecord | AttemptRecord | AssignRecord | RunRecord | ReopenRecord;

/** A settlement that did not succeed (non-zero or lost), as {@linkcode JournalState.failedSettled} keeps it. */
export type FailedSettlement = Omit<ReopenRecord, "type" | "at" | "line">;

/** An open hand-out to an identified runner, as the journal recorded it. */
export interface IssuedRecord {
  /** The runner's id. */
  runner: string;
  /** Its host name. */
  host: string;
  /** When. */
  at: string;
  /** The run that issued it. */
  run: string;
  /** The attempt number. */
  attempt: number;
}

/** What earlier runs left in a journal. */
export interface JournalState {
  /** Settled jobs: key → status (`null`: lost). */
  settled: Map<string, number | null>;
  /** Unsettled jobs last handed to an identified runner (and not delivered since): key → that hand-out. */
  assigned: Map<string, IssuedRecord>;
  /** Every open hand-out of unsettled jobs to identified runners: key → hand-outs. */
  issued: Map<string, IssuedRecord[]>;
  /** The latest attempt number of each key (attempt numbers continue across runs). */
  attempts: Map<string, number>;
  /** Failed attempts kept, per key (`--retries` counts them). */
  failures: Map<string, number>;
  /**
   * Unsettled keys whose last hand-out delivered a fast failure held as a
   * suspect (its verdict was still pending when the run stopped): key → that
   * attempt record. A restart records it as the failure it is (or retries it).
   */
  suspects: Map<string, AttemptRecord>;
  /** Settled keys whose settlement failed (non-zero, lost): key → what it said (a `reopen` record repeats it). */
  failedSettled: Map<string, FailedSettlement>;
  /** Keys with a `reopen` record: their next settling output is named after its attempt. */
  reopened: Set<string>;
  /** Manager runs recorded. */
  runs: number;
  /** Their identities, oldest first. */
  runIds: string[];
}

/** A file a task returned, as stored. */
export interface FileRecord {
  /** Its name in the task. */
  name: string;
  /** Gang member (from 1) that returned it; absent for single-node tasks. */
  node?: number;
  /** Where it is stored, relative to the results directory; `null` when missing. */
  path: string | null;
  /** Size in bytes (0 when missing). */
  size: number;
  /** SHA-256, hex (absent when missing). */
  sha256?: string;
  /** The node reported that the file did not exist. */
  missing?: true;
}

/** One node's part in a task run on binary nodes. */
export interface NodeRecord {
  /** The node's address. */
  host: string;
  /** Gang rank, from 1. */
  rank: number;
  /** Exit status it reported in Finished. */
  status: number;
  /** Start time the node reported in its reply to Start (its own clock). */
  started: string;
}

/** The fields of a {@linkcode JobRecord} the caller provides. */
export type JobFields = Omit<JobRecord, "type" | "size" | "sha256" | "output" | "files" | "lost">;

/** A returned file as received: its bytes, or missing. */
export interface ReturnedFile {
  /** Its name in the task. */
  name: string;
  /** Gang member (from 1), for gangs. */
  node?: number;
  /** The bytes; `undefined` when the node reported the file missing. */
  staged?: StagedOutput;
}

/** Name of the journal inside a results directory. */
export const JOURNAL_FILE = "journal.jsonl";
const OUT_DIR = "out";
const FILES_DIR = "files";
const TMP_DIR = "tmp";
const encoder = new TextEncoder();

let tmpCounter = 0;

/** SHA-256 of no bytes, hex: an empty output's (most jobs print nothing; nothing is hashed for them). */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/**
 * How long a sync of the journal waits for more records when every record
 * in its batch is patient ({@linkcode CommitOptions.patient}), milliseconds.
 * Records nobody waits on are synced at most once a window. Each
 * `fdatasync` is a virtio doorbell and two thread hand-offs on the
 * development VM: serving one runner of two short jobs at a time, 2 ms
 * (with batches gathered during a sync synced at once after it) made 2,212
 * syncs for 5,000 jobs, this 385, and the manager's CPU a job fell from
 * 0.27 to 0.17 ms (README, Performance). The recorder asks for the wait
 * only while other jobs are out.
 */
export const COMMIT_WINDOW_MS = 10;

/** How a record is committed. */
export interface CommitOptions {
  /**
   * Nobody waits on this record before going on (a pipelined runner reads
   * its acks as they come, a local worker starts its next job): its sync
   * may wait up to {@linkcode COMMIT_WINDOW_MS} for other records to share
   * it. A record that is not patient ends that wait at once.
   */
  patient?: boolean;
}

/** What a record says of an empty output. */
const NO_OUTPUT = { size: 0, sha256: EMPTY_SHA256, output: null } as const;

/**
 * Bytes of a staged output after which what is written so far is flushed to
 * disk in the background, so that `publish` waits only for the tail.
 */
const FLUSH_EVERY_BYTES = 32 * 1048576;

/**
 * Bytes of a staged output written through the page cache; what comes after
 * them is written around it (`O_DIRECT`, see `DirectAppender`) where the
 * file system and the platform allow: a small output costs what it always
 * did, a big one neither the copy into fresh cache pages nor their
 * writeback at `publish`. A multiple of 4096 (where the direct part starts).
 */
export const DIRECT_FROM_BYTES = 8 * 1048576;

/**
 * An output being received: streamed to a temporary file and hashed on the
 * way. Past {@linkcode DIRECT_FROM_BYTES} it is written around the page
 * cache where it can be; where it cannot, a big one is flushed to disk while
 * it is still coming in (every {@linkcode FLUSH_EVERY_BYTES}, one flush at a
 * time, through a second handle so that writes do not queue behind it). So
 * making it durable costs little more than its last part either way.
 */
export class StagedOutput {
  readonly #tmpDir: string;
  /** Made with the first byte (an empty output needs none). */
  #hash: Hash | undefined;
  #file: Deno.FsFile | undefined;
  #tmpPath: string | undefined;
  #size = 0;
  /** Size when the last background flush started. */
  #flushedAt = 0;
  /** The background flush in flight; it settles, never rejects (its error is kept). */
  #flushing: Promise<void> | undefined;
  #flushError: unknown;
  /** Writes past {@linkcode DIRECT_FROM_BYTES}, once they started going around the page cache. */
  #direct: DirectAppender | undefined;
  /** Direct writes were tried for this output and cannot be had (the buffered path goes on). */
  #noDirect = false;

  readonly #onFailure: ((err: unknown) => void) | undefined;

  /**
   * @param tmpDir Directory for the temporary file (same file system as the final one).
   * @param onFailure Told when a write fails (the results directory's disk, not the job's output).
   */
  constructor(tmpDir: string, onFailure?: (err: unknown) => void) {
    this.#tmpDir = tmpDir;
    this.#onFailure = onFailure;
  }

  /** Bytes written so far. */
  get size(): number {
    return this.#size;
  }

  /** Appends a chunk. The chunk may be reused by the caller once this settles. */
  async write(chunk: Uint8Array): Promise<void> {
    try {
      await this.#write(chunk);
    } catch (err) {
      this.#onFailure?.(err);
      throw err;
    }
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return;
    if (this.#file === undefined) {
      this.#tmpPath = join(this.#tmpDir, `${Deno.pid}-${++tmpCounter}.part`);
      this.#file = await Deno.open(this.#tmpPath, { write: true, createNew: true });
    }
    (this.#hash ??= createHash("sha256")).update(chunk);
    const at = this.#size;
    this.#size += chunk.length;
    if (this.#direct !== undefined) return await this.#direct.write(chunk);
    if (!this.#noDirect && this.#size > DIRECT_FROM_BYTES) {
      // The bytes up to the mark through the cache, the rest direct from there (an aligned offset).
      const cached = DIRECT_FROM_BYTES - at;
      if (cached > 0) await writeAll(this.#file, chunk.subarray(0, cached));
      this.#direct = DirectAppender.open(this.#tmpPath!, DIRECT_FROM_BYTES);
      this.#noDirect = this.#direct === undefined;
      const rest = cached > 0 ? chunk.subarray(cached) : chunk;
      if (this.#direct !== undefined) return await this.#direct.write(rest);
      return await this.#writeCached(rest);
    }
    await this.#writeCached(chunk);
  }

  async #writeCached(bytes: Uint8Array): Promise<void> {
    await writeAll(this.#file!, bytes);
    if (this.#size - this.#flushedAt >= FLUSH_EVERY_BYTES && this.#flushing === undefined) this.#flushInBackground();
  }

  /** Starts flushing what is written so far (fdatasync on a second handle of the same file). */
  #flushInBackground(): void {
    this.#flushedAt = this.#size;
    const path = this.#tmpPath!;
    this.#flushing = (async () => {
      // Opened as the file was (write, no create): a file this process may
      // not read (umask) flushes as well. Not opened (out of descriptors):
      // no early flush, `publish` makes it durable all the same.
      const handle = await Deno.open(path, { write: true }).catch(() => undefined);
      if (handle === undefined) return;
      try {
        await handle.syncData();
      } finally {
        handle.close();
      }
    })().catch((e) => {
      this.#flushError ??= e;
    }).finally(() => {
      this.#flushing = undefined;
    });
  }

  /** Waits for the background flush, if one runs; throws what it failed with. */
  async #flushed(): Promise<void> {
    await this.#flushing;
    if (this.#flushError !== undefined) throw this.#flushError;
  }

  /**
   * Makes the bytes durable and moves them to `finalPath`; returns the
   * SHA-256. Nothing is written for empty output unless `always` (a returned
   * file exists even when empty).
   */
  async publish(finalPath: string, always = false): Promise<string> {
    const sha256 = this.#hash?.digest("hex") ?? EMPTY_SHA256;
    if (this.#file === undefined && always) {
      this.#tmpPath = join(this.#tmpDir, `${Deno.pid}-${++tmpCounter}.part`);
      this.#file = await Deno.open(this.#tmpPath, { write: true, createNew: true });
    }
    if (this.#file !== undefined) {
      await this.#flushed();
      // The direct part written, cut and synced; the cached part is the same file's, synced with it.
      const direct = this.#direct;
      this.#direct = undefined;
      await direct?.finish();
      await this.#file.sync();
      this.#file.close();
      this.#file = undefined;
      await Deno.rename(this.#tmpPath!, finalPath);
      this.#tmpPath = undefined;
    }
    return sha256;
  }

  /** Drops whatever was received. */
  async discard(): Promise<void> {
    await this.#flushing;
    await this.#direct?.close();
    this.#direct = undefined;
    this.#file?.close();
    this.#file = undefined;
    if (this.#tmpPath !== undefined) await Deno.remove(this.#tmpPath).catch(() => {});
    this.#tmpPath = undefined;
  }
}

/**
 * Writes outputs and journal records of one results directory.
 *
 * @example
 * ```ts ignore
 * const store = await ResultsStore.open("results");
 * const out = store.stageOutput();
 * await out.write(new TextEncoder().encode("hi\n"));
 * await store.commit({ key: "k-1", line: 1, command: "echo hi", status: 0, host: "h",
 *   start: "…", end: "…", attempt: 1 }, out);
 * await store.close();
 * ```
 */
export class ResultsStore {
  /** The results directory. */
  readonly dir: string;
  readonly #journal: Deno.FsFile;
  readonly #durable: boolean;
  #batch: string[] = [];
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Records appended whose batch is not durable yet (gathering, or being written and synced). */
  #unsynced = 0;
  #flushing: Promise<void> | undefined;
  /** How long a batch of patient records waits for company before its sync (see {@linkcode CommitOptions}). */
  readonly #windowMs: number;
  /** The batch holds a record someone waits on: no waiting for company. */
  #urgent = false;
  /** Ends the wait for company at once (an urgent record came). */
  #hurry: (() => void) | undefined;
  /** Directories that got a new entry since the last journal flush. */
  #dirty = new Set<string>();
  /** Errors of journal writes that were cut back: their records are not in the journal. */
  readonly #notWritten = new WeakSet<object>();
  /** Journal length up to its last complete, durable batch. */
  #goodLength: number;
  /** Where outputs are staged (`tmp/`). */
  readonly #tmpDir: string;

  /** What earlier runs on this directory recorded. */
  readonly previous: JournalState;
  /** The claim (marker and lock) on the directory, released on close. */
  readonly #claim: ResultsDir;

  private constructor(
    dir: string,
    journal: Deno.FsFile,
    durable: boolean,
    previous: JournalState,
    length: number,
    claim: ResultsDir,
    windowMs: number,
  ) {
    this.dir = dir;
    this.#windowMs = durable ? windowMs : 0;
    this.#tmpDir = join(dir, TMP_DIR);
    this.#claim = claim;
    this.previous = previous;
    this.#goodLength = length;
    this.#journal = journal;
    this.#durable = durable;
  }

  /**
   * Opens a results directory, creating it if needed. Records of earlier
   * runs are read back into {@linkcode previous}; a torn last record (the
   * manager died while appending it) is cut off. Leftover temporary files
   * are removed: only in a directory claimed as vico's and locked
   * ({@linkcode ResultsDir.claim}), which the store holds until closed.
   *
   * @param dir The results directory, or a claim on it (the store takes it over).
   * @param options `durable: false` skips fsyncs (tests, benchmarks of the engine);
   *   `commitWindowMs`: how long a sync of patient records waits for more
   *   (see {@linkcode CommitOptions}, default {@linkcode COMMIT_WINDOW_MS}).
   * @throws {JournalDamagedError} `JOURNAL_DAMAGED` if the journal is damaged before its last line;
   *   `ResultsDirError` (results_dir.ts) if the directory is not vico's, is in use or is unusable.
   */
  static async open(
    dir: string | ResultsDir,
    options: { durable?: boolean; commitWindowMs?: number } = {},
  ): Promise<ResultsStore> {
    const claim = typeof dir === "string" ? await ResultsDir.claim(dir, options) : dir;
    const path = typeof dir === "string" ? dir : dir.path;
    let journal: Deno.FsFile | undefined;
    try {
      await Deno.mkdir(join(path, OUT_DIR), { recursive: true });
      await Deno.remove(join(path, TMP_DIR), { recursive: true }).catch(() => {});
      await Deno.mkdir(join(path, TMP_DIR), { recursive: true });
      const journalPath = join(path, JOURNAL_FILE);
      const previous = await readJournal(journalPath);
      await removeUnnamed(path, journalPath, previous);
      journal = await Deno.open(journalPath, { append: true, create: true });
      const durable = options.durable ?? true;
      // The journal's own directory entry (new or just cut) must be durable too.
      if (durable) await syncDir(path);
      const length = (await journal.stat()).size;
      return new ResultsStore(
        path,
        journal,
        durable,
        previous,
        length,
        claim,
        options.commitWindowMs ?? COMMIT_WINDOW_MS,
      );
    } catch (err) {
      journal?.close();
      claim.release();
      throw err instanceof VicoError ? err : unusable(path, "open its journal", err);
    }
  }

  /**
   * Bytes of the journal that hold complete, durable records. A reader in
   * this process (the status page) reads no further: what lies past it is
   * a batch being written, which a failed write cuts back and the next
   * batch writes over.
   */
  get durableLength(): number {
    return this.#goodLength;
  }

  /**
   * Records appended and not durable yet: those gathering for the next sync
   * and those being written and synced now.
   */
  get unsynced(): number {
    return this.#unsynced;
  }

  /**
   * Told when the results directory could not take what was given to it: a
   * staged output's write or a result's commit failed for want of the disk
   * (full, read-only, failing), not for a refusal of that one result (a
   * `VicoError`). The run cannot go on then: the manager ends it.
   */
  onFailure: ((err: unknown) => void) | undefined;

  /** Starts receiving one output. */
  stageOutput(): StagedOutput {
    return new StagedOutput(this.#tmpDir, (err) => this.onFailure?.(err));
  }

  /**
   * Commits one result: publishes its output under `out/<key>.out` (when
   * not empty) and its returned files under `files/<key>/` (per gang member
   * under `node-<n>/`), then appends its one record. A reopened key's
   * (see {@linkcode reopen}) are named `<key>.<attempt>` instead, so the
   * earlier attempt's files stay. Resolves once the record is durable. On
   * failure every staged file is discarded.
   */
  commit(
    fields: JobFields,
    output?: StagedOutput,
    returned: ReturnedFile[] = [],
    options: CommitOptions = {},
  ): Promise<JobRecord> {
    if ((output === undefined || output.size === 0) && returned.length === 0) {
      // Nothing to publish (most jobs print nothing): the record alone, one promise.
      const record: JobRecord = { type: "job", ...fields, ...NO_OUTPUT };
      return this.#append(record, options.patient).then(() => record, this.#failed);
    }
    return this.#commitWithFiles(fields, output, returned, options.patient).catch(this.#failed);
  }

  /** Tells {@linkcode onFailure} of a write the disk refused (not a refusal of one result), and fails with it. */
  readonly #failed = (err: unknown): never => {
    if (!(err instanceof VicoError)) this.onFailure?.(err);
    throw err;
  };

  async #commitWithFiles(
    fields: JobFields,
    output: StagedOutput | undefined,
    returned: ReturnedFile[],
    patient = false,
  ): Promise<JobRecord> {
    const staged = output;
    const published: string[] = [];
    let appending = false;
    try {
      const name = this.previous.reopened.has(fields.key) ? `${fields.key}.${fields.attempt}` : fields.key;
      // An empty output has no file to publish (the common case: nothing to wait for).
      const stored = staged === undefined || staged.size === 0
        ? NO_OUTPUT
        : await this.#publishOutput(`${name}.out`, staged, published);
      const record: JobRecord = { type: "job", ...fields, ...stored };
      if (returned.length > 0) record.files = await this.#publishFiles(name, returned, published);
      appending = true;
      await this.#append(record, patient);
      return record;
    } catch (err) {
      await staged?.discard();
      for (const f of returned) await f.staged?.discard();
      await this.#unpublish(published, !appending || this.#wasCut(err));
      throw err;
    }
  }

  /**
   * Records an attempt that failed and will be tried again; its output is
   * kept as `out/<key>~<attempt>.out`. Not a settlement.
   */
  async commitAttempt(
    fields: JobFields & { status: number },
    output: StagedOutput,
    suspect = false,
    returned: ReturnedFile[] = [],
  ): Promise<AttemptRecord> {
    const published: string[] = [];
    let appending = false;
    try {
      const stored = await this.#publishOutput(`${fields.key}~${fields.attempt}.out`, output, published);
      const { nodes: _nodes, ...rest } = fields;
      const record: AttemptRecord = { type: "attempt", ...rest, ...stored, ...(suspect ? { suspect } : {}) };
      if (returned.length > 0) {
        record.files = await this.#publishFiles(`${fields.key}~${fields.attempt}`, returned, published);
      }
      appending = true;
      await this.#append(record);
      return record;
    } catch (err) {
      await output.discard();
      for (const f of returned) await f.staged?.discard();
      await this.#unpublish(published, !appending || this.#wasCut(err));
      throw err;
    }
  }

  /**
   * Settles a job with an attempt already recorded (a held suspect): the
   * job record names that attempt's output; nothing is copied or moved.
   */
  async commitFromAttempt(fields: JobFields, attempt: AttemptRecord): Promise<JobRecord> {
    const record: JobRecord = {
      type: "job",
      ...fields,
      size: attempt.size,
      sha256: attempt.sha256,
      output: attempt.output,
      ...(attempt.files !== undefined ? { files: attempt.files } : {}),
    };
    await this.#append(record);
    return record;
  }

  /** Settles a job as lost: no runner ever reported it. */
  async commitLost(fields: Omit<JobFields, "status">, reason: string): Promise<JobRecord> {
    const empty = this.stageOutput();
    const published = await this.#publishOutput("", empty);
    const record: JobRecord = { type: "job", ...fields, status: null, ...published, lost: reason };
    await this.#append(record);
    return record;
  }

  /**
   * Opens settled jobs again (`--resume-failed`): appends one `reopen`
   * record per settlement and resolves once they are durable; from then on
   * {@linkcode previous} has those keys unsettled (their earlier records
   * count as past attempts, their failure count starts again), and their
   * next settling outputs get names of their own. Call it before any job
   * is handed out. A key that is not settled is left alone.
   */
  async reopen(records: readonly Omit<ReopenRecord, "type" | "at">[]): Promise<ReopenRecord[]> {
    const at = new Date().toISOString();
    const written = records
      .filter((r) => this.previous.settled.has(r.key))
      .map((r): ReopenRecord => ({ type: "reopen", ...r, at }));
    await Promise.all(written.map((r) => this.#append(r)));
    for (const r of written) applyRecord(this.previous, r);
    return written;
  }

  /**
   * Appends a bookkeeping record (an assignment, a run start). It is
   * written with the next batch; callers need not wait.
   */
  note(record: AssignRecord | RunRecord): Promise<void> {
    return this.#append(record).catch(this.#failed);
  }

  /** Whether `err` failed a journal write that was cut back (its records are not in the journal). */
  #wasCut(err: unknown): boolean {
    return typeof err === "object" && err !== null && this.#notWritten.has(err);
  }

  /**
   * Removes the files a failed commit published, when its record is known
   * not to be in the journal (`gone`): a file at a final name always has
   * its record. (A record whose write failed and could not be cut back may
   * still land: its files stay.)
   */
  async #unpublish(published: string[], gone: boolean): Promise<void> {
    if (!gone) return;
    for (const path of published) await Deno.remove(path).catch(() => {});
  }

  async #publishOutput(
    name: string,
    staged: StagedOutput,
    published?: string[],
  ): Promise<{ size: number; sha256: string; output: string | null }> {
    const size = staged.size;
    const relative = size > 0 ? `${OUT_DIR}/${name}` : null;
    const sha256 = await staged.publish(relative === null ? "" : join(this.dir, relative));
    if (relative !== null) {
      published?.push(join(this.dir, relative));
      this.#dirty.add(join(this.dir, OUT_DIR));
    }
    return { size, sha256, output: relative };
  }

  async #publishFiles(key: string, returned: ReturnedFile[], published: string[]): Promise<FileRecord[]> {
    const records: FileRecord[] = [];
    for (const f of returned) {
      // Names come from the manager's own validated task list; check again:
      // whatever arrives, nothing is written outside the results directory.
      const why = whyBadTaskPath(f.name);
      if (why !== undefined) throw new VicoError("REFUSED", `Refusing to store returned file: ${why}`);
      const base = f.node === undefined ? [FILES_DIR, key] : [FILES_DIR, key, `node-${f.node}`];
      const node = f.node === undefined ? {} : { node: f.node };
      if (f.staged === undefined) {
        records.push({ name: f.name, ...node, path: null, size: 0, missing: true });
        continue;
      }
      const relative = [...base, f.name].join("/");
      const target = join(this.dir, relative);
      await this.#makeDirs([...base, ...f.name.split("/").slice(0, -1)]);
      const size = f.staged.size;
      const sha256 = await f.staged.publish(target, true);
      published.push(target);
      this.#dirty.add(dirname(target));
      records.push({ name: f.name, ...node, path: relative, size, sha256 });
    }
    return records;
  }

  /**
   * Makes the directories `parts` name under the results directory, one by
   * one (the parent of each one made is synced with the next journal
   * write), and checks that each is a directory of its own, not a link: a link
   * planted there (by whoever else may write to the directory) would have a
   * returned file renamed into wherever it points. A link swapped in after
   * the check is not caught (there is no `openat` here).
   *
   * @throws {VicoError} `REFUSED` when one of them is not a directory.
   */
  async #makeDirs(parts: string[]): Promise<void> {
    let path = this.dir;
    for (const part of parts) {
      const parent = path;
      path = join(path, part);
      // A new directory's entry is in its parent: synced before the record, like the file's own.
      const made = await Deno.mkdir(path).then(() => true, (err) => {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        return false;
      });
      if (made) this.#dirty.add(parent);
      if (!(await Deno.lstat(path)).isDirectory) {
        throw new VicoError(
          "REFUSED",
          `Refusing to store returned file: ${path} is not a directory (a link, or a file)`,
        );
      }
    }
  }

  /** Waits for pending records, closes the journal and releases the directory. */
  async close(): Promise<void> {
    await this.#flushing;
    this.#journal.close();
    this.#claim.release();
  }

  #append(record: JournalRecord, patient = false): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#batch.push(JSON.stringify(record) + "\n");
    this.#unsynced++;
    if (!patient) {
      this.#urgent = true;
      this.#hurry?.();
    }
    this.#flushing ??= this.#flush();
    return done;
  }

  /** Waits `ms` for more records, or until an urgent one comes. */
  async #company(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#hurry = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.#hurry = undefined;
  }

  async #flush(): Promise<void> {
    // Let the records of this turn of the event loop join the batch.
    await Promise.resolve();
    // A batch of patient records waits for more (one sync for several):
    // from idle, the whole window; after a sync, what is left of the window
    // since that sync began, so that records nobody waits on are synced at
    // most once a window. An urgent record ends the wait.
    let since = performance.now();
    while (this.#batch.length > 0) {
      const left = since + this.#windowMs - performance.now();
      if (left > 0 && !this.#urgent) await this.#company(left);
      since = performance.now();
      const lines = this.#batch;
      const waiters = this.#waiters;
      this.#batch = [];
      this.#waiters = [];
      this.#urgent = false;
      try {
        if (this.#dirty.size > 0) {
          const dirs = [...this.#dirty];
          this.#dirty.clear();
          if (this.#durable) { for (const d of dirs) await syncDir(d); }
        }
        const bytes = encoder.encode(lines.join(""));
        await writeAll(this.#journal, bytes);
        if (this.#durable) await this.#journal.syncData();
        this.#goodLength += bytes.length;
        this.#unsynced -= waiters.length;
        for (const w of waiters) w.resolve();
      } catch (err) {
        // A partial write must not glue the next batch onto a torn record:
        // cut the journal back to its last good length (best effort).
        const cut = await this.#journal.truncate(this.#goodLength).then(() => true, () => false);
        if (cut && typeof err === "object" && err !== null) this.#notWritten.add(err);
        this.#unsynced -= waiters.length;
        for (const w of waiters) w.reject(err);
      }
    }
    this.#flushing = undefined;
  }
}

/**
 * Reads what a journal recorded, one record at a time (bounded memory). A
 * torn last line (see io/journal_reader.ts) is cut off so the next append
 * starts on a clean line; damage before it is a `JournalDamagedError` (core/errors.ts).
 */
async function readJournal(path: string): Promise<JournalState> {
  const state: JournalState = {
    settled: new Map(),
    assigned: new Map(),
    issued: new Map(),
    attempts: new Map(),
    failures: new Map(),
    suspects: new Map(),
    failedSettled: new Map(),
    reopened: new Set(),
    runs: 0,
    runIds: [],
  };
  let tail;
  try {
    tail = await readJournalRecords(path, ({ record }) => applyRecord(state, record as Partial<JournalRecord>));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return state;
    throw err;
  }
  if (tail.torn !== undefined) await Deno.truncate(path, tail.torn.offset);
  return state;
}

/** Ends a read of the journal early, at the record sought. */
const FOUND = Symbol("found");

/**
 * The job list the first run recorded in `dir`'s journal named (its
 * `source`, as given): the list a default results directory was made for.
 * Reads only up to that record (the first line of a journal vico made) and
 * writes nothing. `undefined` when there is no journal, no run names a list,
 * or the journal is damaged before one (opening the store says so).
 *
 * @throws {Deno.errors.PermissionDenied} and other I/O errors reading the journal.
 */
export async function firstRunSource(dir: string): Promise<string | undefined> {
  let source: string | undefined;
  try {
    await readJournalRecords(join(dir, JOURNAL_FILE), ({ record }) => {
      if (record.type === "run" && typeof record.source === "string") {
        source = record.source;
        throw FOUND;
      }
    });
  } catch (err) {
    if (err === FOUND || err instanceof Deno.errors.NotFound) return source;
    if (err instanceof VicoError && err.code === "JOURNAL_DAMAGED") return undefined;
    throw err;
  }
  return undefined;
}

/** A name vico gives a stored output (less `.out`) or a key's returned files: the key, maybe with an attempt. */
const STORED_NAME = /^([0-9a-f]{16}-[1-9][0-9]*)(?:[~.][1-9][0-9]*)?$/;

/**
 * Removes the outputs (`out/`) and returned files (`files/`) that no record
 * names: what a commit left when its record never landed (the manager was
 * killed between their renames and the record's append, or the append
 * failed). Left there, an orphan would pass for the output of the job's
 * next attempt when that one prints nothing (its record says no file), and
 * outlive a re-run that returns other files. Only what such a commit
 * can leave is removed: names vico makes, of keys the journal has not
 * settled, in a journal that recorded something (a directory whose
 * journal is gone keeps its files); plain files and links only (never
 * followed), and the directories under `files/` that this empties.
 */
async function removeUnnamed(dir: string, journalPath: string, state: JournalState): Promise<void> {
  // A journal that recorded nothing (gone, or new): no commit of it can have left anything.
  if (state.runs === 0 && state.attempts.size === 0) return;
  /** Whether `name` is one vico gives a file of a key that is not settled. */
  const unsettled = (name: string) => {
    const m = STORED_NAME.exec(name);
    return m !== null && !state.settled.has(m[1]);
  };
  // The files of unsettled keys (few: none once a run has finished), and the directories holding them.
  const candidates = new Set<string>();
  const dirs: string[] = [];
  for (const e of Deno.readDirSync(join(dir, OUT_DIR))) {
    if (!e.isDirectory && e.name.endsWith(".out") && unsettled(e.name.slice(0, -4))) {
      candidates.add(`${OUT_DIR}/${e.name}`);
    }
  }
  const walk = (relative: string): void => {
    for (const e of Deno.readDirSync(join(dir, relative))) {
      const child = `${relative}/${e.name}`;
      if (e.isDirectory) walk(child);
      else candidates.add(child);
    }
    dirs.push(relative);
  };
  try {
    for (const e of Deno.readDirSync(join(dir, FILES_DIR))) {
      if (e.isDirectory && unsettled(e.name)) walk(`${FILES_DIR}/${e.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (candidates.size === 0 && dirs.length === 0) return;
  // Those a record names stay (a failed attempt's, a reopened settlement's): a second read, only now.
  await readJournalRecords(journalPath, ({ record }) => {
    if (record.type !== "job" && record.type !== "attempt") return;
    const { output, files } = record as Partial<JobRecord>;
    if (typeof output === "string") candidates.delete(output);
    if (Array.isArray(files)) {
      for (const f of files) if (typeof f?.path === "string") candidates.delete(f.path);
    }
  });
  for (const relative of candidates) await removeIfThere(join(dir, relative));
  // Deepest first, and only if emptied (a non-recursive remove of a directory that is not empty fails).
  for (const relative of dirs) await Deno.remove(join(dir, relative)).catch(() => {});
}

async function removeIfThere(path: string): Promise<void> {
  await Deno.remove(path).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** Folds one journal record into the state. */
function applyRecord(state: JournalState, record: Partial<JournalRecord>): void {
  const key = (record as { key?: unknown }).key;
  const attempt = (record as { attempt?: unknown }).attempt;
  if (typeof key === "string" && typeof attempt === "number" && attempt > (state.attempts.get(key) ?? 0)) {
    state.attempts.set(key, attempt);
  }
  switch (record.type) {
    case "job":
      if (typeof key === "string" && (typeof record.status === "number" || record.status === null)) {
        state.settled.set(key, record.status);
        if (record.status === 0) state.failedSettled.delete(key);
        else {
          state.failedSettled.set(key, {
            key,
            status: record.status,
            host: String(record.host),
            attempt: typeof attempt === "number" ? attempt : 1,
            ...(record.timedOut === true ? { timedOut: true as const } : {}),
          });
        }
        state.assigned.delete(key);
        state.issued.delete(key);
        state.failures.delete(key);
        state.suspects.delete(key);
      }
      break;
    case "assign":
      if (
        typeof key === "string" && typeof record.runner === "string" && typeof record.run === "string" &&
        typeof attempt === "number" && !state.settled.has(key)
      ) {
        const issued: IssuedRecord = {
          runner: record.runner,
          host: String(record.host),
          at: String(record.at),
          run: record.run,
          attempt,
        };
        state.assigned.set(key, issued);
        state.suspects.delete(key); // handed out again: that verdict was given
        const list = state.issued.get(key);
        if (list === undefined) state.issued.set(key, [issued]);
        else list.push(issued);
      }
      break;
    case "attempt":
      if (typeof key === "string" && typeof attempt === "number" && !state.settled.has(key)) {
        // That hand-out delivered: it holds nothing any more.
        const list = state.issued.get(key)?.filter((i) => i.attempt !== attempt);
        if (list !== undefined) state.issued.set(key, list);
        if (state.assigned.get(key)?.attempt === attempt) state.assigned.delete(key);
        // Suspects count too: a restart cannot tell the ones the black-hole
        // rule sent elsewhere (a few retries fewer at worst, never more).
        state.failures.set(key, (state.failures.get(key) ?? 0) + 1);
        if (record.suspect === true) state.suspects.set(key, record as AttemptRecord);
        else state.suspects.delete(key);
      }
      break;
    case "reopen":
      // Meaningful only for a settled key: its settlement becomes a past attempt.
      if (typeof key === "string" && state.settled.has(key)) {
        state.settled.delete(key);
        state.failedSettled.delete(key);
        state.reopened.add(key);
      }
      break;
    case "run":
      state.runs++;
      if (typeof record.id === "string") state.runIds.push(record.id);
      break;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
