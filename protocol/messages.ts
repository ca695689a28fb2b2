/**
 * Every message of vico's wire protocols, as data only: no behaviour here.
 * Messages are named by direction, as in the drafts: the text protocol runs
 * between a manager and a runner, the binary protocol between an owner (the
 * manager) and a node (the runner).
 *
 * Spec: `../shared/seeds/002_*.txt` (text 1.1) and `000_*.txt` (binary),
 * as read by `../shared/protocol-notes.md` and `docs/protocol.md`.
 *
 * @module
 */

/** The TCP port a manager listens on, and a runner dials, unless told otherwise (both protocols). */
export const DEFAULT_PORT = 7707;

// ---------------------------------------------------------------------------
// Text protocol 1.1
// ---------------------------------------------------------------------------

/** The text protocol version a manager announces in `VERSIO`. */
export const TEXT_PROTOCOL_VERSION = "1.1";

/** Text keywords, exactly as they appear on the wire. */
export const TextKeyword = Object.freeze({
  /** Runner hail prefix: `SALUTON; MI <HOSTNAME>`. */
  HAIL_PREFIX: "SALUTON; MI ",
  /** Manager version announcement prefix: `VERSIO <VERSION>`. */
  VERSIO_PREFIX: "VERSIO ",
  /** Runner acknowledges the version. */
  KOMPRENAS: "KOMPRENAS",
  /** Runner asks for a job. */
  PETO: "PETO",
  /** Runner reports a finished job: `REZULTO <JOBNAME> <STATUS> <SIZE>`. */
  REZULTO_PREFIX: "REZULTO ",
  /** Manager is ready for the output bytes. */
  PRETA: "PRETA",
  /** Manager has received (and stored) the output. */
  RICEVIS: "RICEVIS",
  /** Manager has no more jobs. */
  FINO: "FINO",
  /** Runner's last worker agrees to close. */
  FINO_ANKAU: "FINO ANKAU",
  /** Manager drops the runner with a reason (the notes' one addition). */
  ERARO_PREFIX: "ERARO ",
});

/** A runner's line, as received by the manager. */
export type FromRunnerText =
  | { readonly kind: "hail"; readonly host: string }
  | { readonly kind: "komprenas" }
  | { readonly kind: "peto" }
  | {
    readonly kind: "rezulto";
    readonly job: string;
    readonly status: number;
    readonly size: number;
  }
  | { readonly kind: "finoAnkau" };

/** A manager's line, as received by the runner. */
export type ToRunnerText =
  | { readonly kind: "versio"; readonly version: string }
  | { readonly kind: "job"; readonly name: string }
  | { readonly kind: "fino" }
  | { readonly kind: "preta" }
  | { readonly kind: "ricevis" }
  | { readonly kind: "eraro"; readonly reason: string };

/** What the runner expects next; it decides how a manager line is read. */
export type RunnerExpectation = "versio" | "job" | "preta" | "ricevis";

// ---------------------------------------------------------------------------
// Binary protocol "1.0"
// ---------------------------------------------------------------------------

/** The binary protocol version a node announces in Join. */
export const BINARY_PROTOCOL_VERSION = "1.0";

/** Frame type bytes, as the draft and the notes number them. */
export const FrameType = Object.freeze({
  /** Positive reply; the reply to Start also carries the node's start time. */
  ACCEPT: 0x01,
  /** Negative reply with a reason. */
  REJECT: 0x02,
  /** Node asks to join: `version;modules`. */
  JOIN: 0x03,
  /** Node leaves after its results. */
  LEAVE: 0x04,
  /** Owner asks for the node's status (bare) or node answers (with a value). */
  STATUS: 0x05,
  /** Reserved by the draft: never sent, a protocol error when received. */
  TASK: 0x06,
  /** Owner: everything is staged; hold until Start. */
  WAIT: 0x07,
  /** Owner: start the runs now. */
  START: 0x08,
  /** Owner: end the running program. */
  STOP: 0x09,
  /** Node: the runs ended, with the last run's exit status. */
  FINISHED: 0x10,
  /** Node: one returned file (or the missing marker). */
  RESULT: 0x11,
  /** Either side: ending the session, with a reason. */
  DISCONNECT: 0x12,
  /** Owner: a file to stage. */
  FILE: 0x13,
  /** Owner: a staged program to run, and its log file. */
  RUN: 0x14,
  /** Owner: a file to return after the runs. */
  RET: 0x15,
});

/** Node status values carried by a Status reply. */
export const NodeStatus = Object.freeze({
  /** Joined, nothing staged yet. */
  IDLE: 0x01,
  /** Receiving files and controls (the draft's "getting info"). */
  WAITING_FOR_INPUT: 0x02,
  /** Staged, waiting for Start. */
  READY_TO_START: 0x03,
  /** Running the programs. */
  WORKING: 0x04,
  /** The runs ended (numbered by the notes). */
  FINISHED: 0x05,
});

/** One of {@linkcode NodeStatus}'s values. */
export type NodeStatusValue = typeof NodeStatus[keyof typeof NodeStatus];

/**
 * The states of a binary session, after the draft's node statuses: both
 * sides (the manager's owner session and the runner's node session) walk
 * the same ones. The five in the middle are reported as
 * {@linkcode NodeStatus} values; `Joining`, `Leaving` and `Closed` are the
 * connection's ends.
 */
export type BinaryState =
  | "Joining"
  | "Idle"
  | "WaitingForInput"
  | "ReadyToStart"
  | "Working"
  | "Finished"
  | "Leaving"
  | "Closed";

/** Result length that marks a requested file that does not exist. */
export const MISSING_FILE_LENGTH = 0xffffffff;

/** The reason an owner gives when it has no task for a node. */
export const NO_MORE_TASKS = "no more tasks";

/** A frame sent by the owner (manager) to a node (runner). */
export type ToNode =
  | { readonly kind: "accept" }
  | { readonly kind: "reject"; readonly reason: string }
  | { readonly kind: "statusRequest" }
  /** Header of a File frame: `size` payload bytes follow. */
  | { readonly kind: "file"; readonly name: string; readonly size: number }
  | { readonly kind: "run"; readonly program: string; readonly log: string }
  | { readonly kind: "ret"; readonly name: string }
  | { readonly kind: "wait" }
  | { readonly kind: "start" }
  | { readonly kind: "stop" }
  | { readonly kind: "disconnect"; readonly reason: string };

/** A frame sent by a node (runner) to the owner (manager). */
export type FromNode =
  | { readonly kind: "join"; readonly version: string; readonly modules: readonly string[] }
  | { readonly kind: "accept" }
  /** The Accept that answers Start, with the node's start time. */
  | { readonly kind: "started"; readonly time: string }
  | { readonly kind: "reject"; readonly reason: string }
  | { readonly kind: "status"; readonly value: number }
  | { readonly kind: "finished"; readonly status: number }
  /** Header of a Result frame: `size` payload bytes follow, or `missing`. */
  | { readonly kind: "result"; readonly size: number; readonly missing: boolean }
  | { readonly kind: "leave" }
  | { readonly kind: "disconnect"; readonly reason: string };
