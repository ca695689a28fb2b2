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
