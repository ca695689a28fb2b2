/**
 * The vico extension: a short exchange of lines that vico peers put before
 * either protocol, on the same connection, to agree on what the drafts
 * cannot carry: mutual authentication with a shared secret, a runner's
 * stable identity (so a restarted manager can wait for it), liveness
 * pulses, a job timeout, and the jobs a returning runner still holds.
 *
 * It starts with the byte `V` (0x56), which is neither a text hail's `S`
 * nor a binary Join's 0x03, so a peer that only knows the drafts refuses it
 * and closes (the protocol notes say so), and a vico runner then connects
 * again without it. Byte for byte (each line ends with `\n`):
 *
 * ```
 * runner:  VICO/1 hello proto=<text|binary> [id=<id>] [want=<f,f>] [holds=<n>] [nonce=<hex64>]
 * (with nonce, a manager with a secret proves itself, then the runner:)
 * manager: VICO/1 auth nonce=<hex64> proof=<hex64>
 * runner:  VICO/1 proof <hex64>
 * runner:  <n lines: the command line of each job it still holds (text),
 *           or "task <key>" for the task it still holds (binary)>
 * manager: VICO/1 ok [pulse=<seconds>] [timeout=<ms>] [lease=<seconds>] [resume=<0|1>] [maxout=<bytes>] [tag=1]
 *          [pipe=1 [ahead=0]] [drop=<i,j,…>] [have=<i,j,…>]
 *      or: VICO/1 no <reason>
 * ```
 *
 * With the `tag` feature (the runner wants it, the manager answers
 * `tag=1`), every hand-out and every result carries its assignment's
 * identity, `run=<run id> key=<job key> attempt=<n>` (a {@linkcode Tag}):
 * the manager sends `VICO/1 job <tag>` just before each job line, the
 * runner sends `VICO/1 result <tag> [timedout=1]` just before each
 * `REZULTO`, and a tagged held line is `<tag> <command line>` (text) or
 * `task <tag>` (binary). `drop=` lists the held lines (0-based) that the
 * manager does not want: the runner sets those results aside. `have=`
 * lists those of them the manager already recorded (the job is settled,
 * or that attempt delivered: the runner was stopped after the ack and
 * before it forgot the result): the runner forgets those instead. Each
 * `have=` line is in `drop=` too, so a runner that does not know `have=`
 * sets it aside rather than delivering it again.
 *
 * With the `pipe` feature as well (the runner wants `tag,pipe`, the
 * manager answers `tag=1 pipe=1`), the text exchange is pipelined: the
 * runner sends `PETO`s and results (tag line, `REZULTO`, the raw bytes at
 * once, no `PRETA`) without waiting; the manager answers each `PETO` in
 * order and acknowledges each result, once durable, with `VICO/1 ack <tag>`
 * ({@linkcode formatAck}, {@linkcode parseAck}), in the order they arrived.
 * `ahead=0` (with `pipe=1`) asks the runner to send no `PETO` for a busy
 * worker (none ahead of its running job): the manager judges each result
 * before that worker's next job (`--halt`).
 *
 * then the chosen protocol begins as the drafts say (hail, or Join). The
 * proofs are computed in `auth.ts`. Pure: no I/O.
 *
 * @module
 */

import { isHex64 } from "./auth.ts";
import { ProtocolError } from "../core/errors.ts";
import { clipReason } from "../core/limits.ts";

/** First byte of the extension (`V`). */
export const EXTENSION_FIRST_BYTE = 0x56;
/** Prefix of every extension line. */
export const EXTENSION_PREFIX = "VICO/1 ";
/** The liveness line either side sends when the `pulse` feature is on. */
export const PULSE_LINE = "PULSO";
/**
 * Pulses a manager lets a runner (or a binary node, probed with Status)
 * stay silent before it takes it for lost: more than this many pulse
 * intervals without a byte.
 */
export const MANAGER_SILENT_PULSES = 3;
/**
 * Pulses a runner lets its manager stay silent before it drops the
 * connection: one more than {@linkcode MANAGER_SILENT_PULSES}, so that of
 * two sides cut apart, the manager notices first and the runner's jobs are
 * already waiting for it on its lease.
 */
export const RUNNER_SILENT_PULSES = 4;
/** Most held jobs a runner may announce. */
export const MAX_HOLDS = 10_000;
/** Prefix of a binary node's held-task line: `task <key>`. */
export const HELD_TASK_PREFIX = "task ";
/** The file an owner stages first for an identified node: the task's key. */
export const TASK_KEY_FILE = ".vico/task";

/** Prefix of the line that precedes a tagged job line (manager to runner). */
export const JOB_TAG_PREFIX = EXTENSION_PREFIX + "job ";
/** Prefix of the line that precedes a tagged `REZULTO` (runner to manager). */
export const RESULT_TAG_PREFIX = EXTENSION_PREFIX + "result ";
/** The feature name of tagged hand-outs and results. */
export const TAG_FEATURE = "tag";
/** The feature name of the pipelined text exchange (needs {@linkcode TAG_FEATURE}). */
export const PIPE_FEATURE = "pipe";
/** Prefix of the line that acknowledges a result in the pipelined exchange (manager to runner). */
export const ACK_TAG_PREFIX = EXTENSION_PREFIX + "ack ";
/**
 * The line a pipelined runner sends when it stops (runner to manager):
 * every `PETO` it has unanswered is answered `FINO`, held ones at once.
 */
export const LEAVE_LINE = EXTENSION_PREFIX + "leave";
/** Prefix of the line that gives a hand-out back unstarted in the pipelined exchange (runner to manager). */
export const BACK_TAG_PREFIX = EXTENSION_PREFIX + "back ";
/** Most `PETO`s a pipelined runner may have unanswered: more is a protocol error. */
export const MAX_PIPE_REQUESTS = 1024;

/** The identity of one hand-out: which run issued it, for which job, as which attempt. */
export interface Tag {
  /** The manager run's id (its `run` record's). */
  readonly run: string;
  /** The job's content key. */
  readonly key: string;
  /** The attempt number. */
  readonly attempt: number;
}

const TAG_TOKEN = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * Formats a tag as `run=<run> key=<key> attempt=<n>`.
 *
 * @example
 * ```ts
 * import { formatTag, parseTag } from "./vico_extension.ts";
 * const text = formatTag({ run: "r1", key: "ab12-1", attempt: 2 });
 * console.assert(text === "run=r1 key=ab12-1 attempt=2" && parseTag(text).attempt === 2);
 * ```
 */
export function formatTag(tag: Tag): string {
  return `run=${tag.run} key=${tag.key} attempt=${tag.attempt}`;
}

/**
 * Formats the acknowledgement of a result: `VICO/1 ack <tag>` (no `\n`).
 *
 * @example
 * ```ts
 * import { formatAck, parseAck } from "./vico_extension.ts";
 * const line = formatAck({ run: "r1", key: "ab12-1", attempt: 2 });
 * console.assert(line === "VICO/1 ack run=r1 key=ab12-1 attempt=2" && parseAck(line).key === "ab12-1");
 * ```
 */
export function formatAck(tag: Tag): string {
  return ACK_TAG_PREFIX + formatTag(tag);
}

/**
 * Parses an acknowledgement line: exactly `VICO/1 ack run=… key=… attempt=…`.
 *
 * @throws {ProtocolError} On anything else (extra fields included).
 */
export function parseAck(line: string): Tag {
  if (!line.startsWith(ACK_TAG_PREFIX)) throw new ProtocolError("Expected VICO/1 ack <tag>", line);
  const { run, key, attempt, rest } = parseTag(line.slice(ACK_TAG_PREFIX.length));
  if (rest !== "") throw new ProtocolError("Unknown field after an ack's tag", line);
  return { run, key, attempt };
}

/**
 * A job tag line's optional sequence field, after the tag: `seq=<n>` (the
 * job's line in its list; for a template run, its sequence number `{#}`).
 * The runner exports it to the job as `VICO_SEQ` and does not echo it.
 */
export const SEQ_FIELD = "seq=";

/**
 * Splits a hand-out's tag text into the tag the runner echoes and the
 * job's sequence number, if the manager sent one (` seq=<n>` at the end).
 *
 * @example
 * ```ts
 * import { splitJobSeq } from "./vico_extension.ts";
 * const { tag, seq } = splitJobSeq("run=r1 key=ab12-1 attempt=2 seq=7");
 * console.assert(tag === "run=r1 key=ab12-1 attempt=2" && seq === 7);
 * console.assert(splitJobSeq("run=r1 key=k attempt=1").seq === undefined);
 * ```
 */
export function splitJobSeq(text: string): { tag: string; seq?: number } {
  const m = / seq=([1-9][0-9]{0,14})$/.exec(text);
  return m === null ? { tag: text } : { tag: text.slice(0, m.index), seq: Number(m[1]) };
}

/**
 * Parses the first three tokens of `text` as a tag; the rest (after one
 * space) is returned too.
 *
 * @throws {ProtocolError} If they are not `run=… key=… attempt=…`.
 */
export function parseTag(text: string): Tag & { rest: string } {
  const parts = text.split(" ");
  const [run, key, attempt] = parts;
  const value = (token: string | undefined, name: string) => {
    if (token === undefined || !token.startsWith(name + "=") || !TAG_TOKEN.test(token.slice(name.length + 1))) {
      throw new ProtocolError(`Tag field ${name} is missing or malformed`, text);
    }
    return token.slice(name.length + 1);
  };
  const n = value(attempt, "attempt");
  if (!/^[1-9][0-9]{0,8}$/.test(n)) throw new ProtocolError("Tag attempt is not a positive whole number", text);
  return {
    run: value(run, "run"),
    key: value(key, "key"),
    attempt: Number(n),
    rest: parts.slice(3).join(" "),
  };
}

/**
 * The tag of a held line, if it has one: `<tag> <command>` (text) or
 * `task <tag>` (binary). Untagged or malformed lines give `undefined` (the
 * manager cannot bind them to a hand-out and does not take them back).
 */
export function heldTag(line: string, proto: "text" | "binary"): Tag | undefined {
  const text = proto === "binary"
    ? (line.startsWith(HELD_TASK_PREFIX) ? splitJobSeq(line.slice(HELD_TASK_PREFIX.length)).tag : "")
    : line;
  try {
    const { run, key, attempt, rest } = parseTag(text);
    if ((proto === "binary") !== (rest === "")) return undefined;
    return { run, key, attempt };
  } catch {
    return undefined;
  }
}

/** What a runner says about itself. */
export interface ClientHello {
  /** The protocol that follows. */
  readonly proto: "text" | "binary";
  /** Stable runner identity (persists across restarts of the runner and the manager). */
  readonly id?: string;
  /** Features it wants (`pulse`, …). */
  readonly want: readonly string[];
  /** Number of held-job lines that follow (after the proof, when authenticating). */
  readonly holds: number;
  /** The runner's fresh nonce: it asks the manager to authenticate (64 hex digits). */
  readonly nonce?: string;
}

/** The manager's answer. */
export type ServerHello =
  | {
    readonly kind: "ok";
    /** Seconds between pulses (0 or absent: no pulses). */
    readonly pulse?: number;
    /** Time limit for each text job, in milliseconds. */
    readonly timeoutMs?: number;
    /** How long the manager keeps a lost runner's jobs for it, in seconds. */
    readonly lease?: number;
    /** Binary: 1 when the manager takes back the task the node announced, 0 when it should drop it. */
    readonly resume?: number;
    /** 1: hand-outs and results are tagged (the `tag` feature). */
    readonly tag?: number;
    /** 1: the text exchange is pipelined (the `pipe` feature; only with `tag=1`). */
    readonly pipe?: number;
    /** 0: a pipelined runner asks for no job ahead of a worker's running one (`--halt`); absent: it may. */
    readonly ahead?: number;
    /** Held lines (0-based) the manager does not want: set those results aside. */
    readonly drop?: readonly number[];
    /** Held lines (0-based, each also in `drop`) whose results the manager already recorded: forget those. */
    readonly have?: readonly number[];
    /**
     * Largest output, in bytes, the manager takes in one `REZULTO` (its
     * `--max-output`). A runner keeps each job under the smaller of this and
     * its own limit, so an over-limit job fails alone (status 125 and a note)
     * instead of the manager dropping the runner.
     */
    readonly maxOutput?: number;
  }
  | { readonly kind: "no"; readonly reason: string }
  /** A manager with a secret: its nonce and its proof, before the runner proves itself. */
  | { readonly kind: "auth"; readonly nonce: string; readonly proof: string };

const ID = /^[A-Za-z0-9._-]{1,64}$/;
const FEATURE = /^[a-z][a-z0-9-]{0,31}$/;

function fields(rest: string, line: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const token of rest.split(" ")) {
    if (token === "") continue;
    const eq = token.indexOf("=");
    if (eq <= 0) throw new ProtocolError("Extension field is not key=value", line);
    const key = token.slice(0, eq);
    if (out.has(key)) throw new ProtocolError(`Extension field ${key} is repeated`, line);
    out.set(key, token.slice(eq + 1));
  }
  return out;
}

/** Largest `maxout=` accepted: any byte count a JavaScript number holds exactly. */
const MAX_BYTE_COUNT = Number.MAX_SAFE_INTEGER;

function byteCount(text: string | undefined, what: string, line: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,16}$/.test(text) || Number(text) > MAX_BYTE_COUNT) {
    throw new ProtocolError(`Extension ${what} is not a byte count up to ${MAX_BYTE_COUNT}`, line);
  }
  return Number(text);
}

function whole(text: string | undefined, what: string, line: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) > max) {
    throw new ProtocolError(`Extension ${what} is not a whole number up to ${max}`, line);
  }
  return Number(text);
}

/**
 * Parses the runner's hello line.
 *
 * @example
 * ```ts
 * import { parseClientHello } from "./vico_extension.ts";
 * const h = parseClientHello("VICO/1 hello proto=text id=node7-a1 want=pulse holds=2");
 * console.assert(h.proto === "text" && h.id === "node7-a1" && h.holds === 2);
 * ```
 * @throws {ProtocolError} On anything but a well-formed hello.
 */
export function parseClientHello(line: string): ClientHello {
  const head = EXTENSION_PREFIX + "hello";
  if (line !== head && !line.startsWith(head + " ")) throw new ProtocolError("Expected VICO/1 hello", line);
  const f = fields(line.slice(head.length), line);
  const proto = f.get("proto");
  if (proto !== "text" && proto !== "binary") throw new ProtocolError("Extension proto must be text or binary", line);
  const id = f.get("id");
  if (id !== undefined && !ID.test(id)) throw new ProtocolError("Extension id must be 1-64 of A-Z a-z 0-9 . _ -", line);
  const want = (f.get("want") ?? "").split(",").filter((w) => w.length > 0);
  for (const w of want) if (!FEATURE.test(w)) throw new ProtocolError("Extension feature name is malformed", line);
  const holds = whole(f.get("holds"), "holds", line, MAX_HOLDS) ?? 0;
  const nonce = f.get("nonce");
  if (nonce !== undefined && !isHex64(nonce)) {
    throw new ProtocolError("Extension nonce must be 64 lowercase hex digits", line);
  }
  return { proto, id, want, holds, nonce };
}

/** Formats the runner's hello line (without its held-job lines). */
export function formatClientHello(h: ClientHello): string {
  const parts = [EXTENSION_PREFIX + "hello", `proto=${h.proto}`];
  if (h.id !== undefined) parts.push(`id=${h.id}`);
  if (h.want.length > 0) parts.push(`want=${h.want.join(",")}`);
  if (h.holds > 0) parts.push(`holds=${h.holds}`);
  if (h.nonce !== undefined) parts.push(`nonce=${h.nonce}`);
  return parts.join(" ");
}

/**
 * Parses the manager's answer (`auth`, `ok` or `no`).
 *
 * @throws {ProtocolError} On anything but `VICO/1 ok …`, `VICO/1 no …` or `VICO/1 auth …`.
 */
export function parseServerHello(line: string): ServerHello {
  if (line.startsWith(EXTENSION_PREFIX + "no")) {
    return { kind: "no", reason: line.slice((EXTENSION_PREFIX + "no").length).trim() || "refused" };
  }
  const auth = EXTENSION_PREFIX + "auth ";
  if (line.startsWith(auth)) {
    const f = fields(line.slice(auth.length), line);
    const nonce = f.get("nonce") ?? "";
    const proof = f.get("proof") ?? "";
    if (f.size !== 2 || !isHex64(nonce) || !isHex64(proof)) {
      throw new ProtocolError("Extension auth needs nonce= and proof=, each 64 lowercase hex digits", line);
    }
    return { kind: "auth", nonce, proof };
  }
  const head = EXTENSION_PREFIX + "ok";
  if (line !== head && !line.startsWith(head + " ")) throw new ProtocolError("Expected VICO/1 ok or no", line);
  const f = fields(line.slice(head.length), line);
  if (f.get("pipe") === "1" && f.get("tag") !== "1") throw new ProtocolError("Extension pipe=1 needs tag=1", line);
  return {
    kind: "ok",
    pulse: whole(f.get("pulse"), "pulse", line, 86_400),
    timeoutMs: whole(f.get("timeout"), "timeout", line, 999_999_999),
    lease: whole(f.get("lease"), "lease", line, 86_400),
    resume: whole(f.get("resume"), "resume", line, 1),
    tag: whole(f.get("tag"), "tag", line, 1),
    pipe: whole(f.get("pipe"), "pipe", line, 1),
    ahead: whole(f.get("ahead"), "ahead", line, 1),
    drop: f.has("drop") ? (f.get("drop") ?? "").split(",").map((n) => whole(n, "drop", line, MAX_HOLDS)!) : undefined,
    have: f.has("have") ? (f.get("have") ?? "").split(",").map((n) => whole(n, "have", line, MAX_HOLDS)!) : undefined,
    maxOutput: byteCount(f.get("maxout"), "maxout", line),
  };
}

/** Formats the manager's answer. */
export function formatServerHello(h: ServerHello): string {
  if (h.kind === "no") return `${EXTENSION_PREFIX}no ${clipReason(h.reason).replace(/[\r\n]+/g, " ")}`;
  if (h.kind === "auth") return `${EXTENSION_PREFIX}auth nonce=${h.nonce} proof=${h.proof}`;
  const parts = [EXTENSION_PREFIX + "ok"];
  if (h.pulse) parts.push(`pulse=${h.pulse}`);
  if (h.timeoutMs) parts.push(`timeout=${Math.round(h.timeoutMs)}`);
  if (h.lease) parts.push(`lease=${h.lease}`);
  if (h.resume !== undefined) parts.push(`resume=${h.resume}`);
  if (h.tag) parts.push(`tag=${h.tag}`);
  if (h.pipe) parts.push(`pipe=${h.pipe}`);
  if (h.pipe && h.ahead !== undefined) parts.push(`ahead=${h.ahead}`);
  if (h.drop !== undefined && h.drop.length > 0) parts.push(`drop=${h.drop.join(",")}`);
  if (h.have !== undefined && h.have.length > 0) parts.push(`have=${h.have.join(",")}`);
  if (h.maxOutput !== undefined) parts.push(`maxout=${Math.floor(h.maxOutput)}`);
  return parts.join(" ");
}

const PROOF_HEAD = EXTENSION_PREFIX + "proof ";

/** Formats the runner's proof line. */
export function formatClientProof(proof: string): string {
  return PROOF_HEAD + proof;
}

/**
 * Parses the runner's proof line, returning the proof.
 *
 * @throws {ProtocolError} On anything but `VICO/1 proof <64 hex digits>`.
 */
export function parseClientProof(line: string): string {
  const proof = line.startsWith(PROOF_HEAD) ? line.slice(PROOF_HEAD.length) : "";
  if (!isHex64(proof)) throw new ProtocolError("Expected VICO/1 proof with 64 lowercase hex digits", line);
  return proof;
}

/**
 * Whether a manager's refusal (`VICO/1 no <reason>`, or a binary Reject) is
 * about authentication: a runner with the wrong secret or none. VICO/1
 * carries only the reason's words, and the manager's reasons about
 * authentication all name it; this is the one place that reads them.
 *
 * @example
 * ```ts
 * import { isAuthRefusal } from "./vico_extension.ts";
 * console.assert(isAuthRefusal("authentication failed: the runner's proof is wrong"));
 * console.assert(!isAuthRefusal("no more tasks"));
 * ```
 */
export function isAuthRefusal(reason: string): boolean {
  return /authenticat/i.test(reason);
}
