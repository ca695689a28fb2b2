/**
 * Codec for the text protocol 1.1: lines in, typed messages out, and back.
 * Pure: no I/O. Line framing (`\n`, `\r\n`, the line limit, UTF-8) is the
 * {@linkcode BufferedReader}'s job; this module reads and writes one line.
 *
 * @module
 */

import { EXTENSION_PREFIX, PULSE_LINE } from "./vico_extension.ts";
import { ProtocolError } from "../core/errors.ts";
import { clipReason } from "../core/limits.ts";
import { type FromRunnerText, type RunnerExpectation, TextKeyword as K, type ToRunnerText } from "./messages.ts";

const DIGITS = /^[0-9]+$/;

/**
 * Parses a line sent by a runner. The line carries no terminator.
 *
 * `REZULTO <JOBNAME> <STATUS> <SIZE>`: job names may contain spaces, so the
 * status and size are the last two space-separated tokens.
 *
 * @example
 * ```ts
 * import { parseRunnerLine } from "./text_codec.ts";
 * const msg = parseRunnerLine("REZULTO echo a  b 0 5");
 * console.assert(msg.kind === "rezulto" && msg.job === "echo a  b" && msg.size === 5);
 * ```
 *
 * @throws {ProtocolError} If the line is no runner message.
 */
export function parseRunnerLine(line: string): FromRunnerText {
  switch (line) {
    case K.PETO:
      return { kind: "peto" };
    case K.KOMPRENAS:
      return { kind: "komprenas" };
    case K.FINO_ANKAU:
      return { kind: "finoAnkau" };
  }
  if (line.startsWith(K.REZULTO_PREFIX)) return parseRezulto(line);
  if (line.startsWith(K.HAIL_PREFIX)) {
    const host = line.slice(K.HAIL_PREFIX.length);
    if (host.length === 0) throw new ProtocolError("Hail names no host", line);
    return { kind: "hail", host };
  }
  throw new ProtocolError("Unknown runner message", line);
}

function parseRezulto(line: string): FromRunnerText {
  const sizeAt = line.lastIndexOf(" ");
  const statusAt = line.lastIndexOf(" ", sizeAt - 1);
  if (statusAt < K.REZULTO_PREFIX.length) {
    throw new ProtocolError("REZULTO needs <JOBNAME> <STATUS> <SIZE>", line);
  }
  const job = line.slice(K.REZULTO_PREFIX.length, statusAt);
  const statusText = line.slice(statusAt + 1, sizeAt);
  const sizeText = line.slice(sizeAt + 1);
  if (job.length === 0) throw new ProtocolError("REZULTO names no job", line);
  if (!DIGITS.test(statusText) || statusText.length > 3 || Number(statusText) > 255) {
    throw new ProtocolError("REZULTO status is not a number from 0 to 255", line);
  }
  if (!DIGITS.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new ProtocolError("REZULTO size is not a byte count", line);
  }
  return { kind: "rezulto", job, status: Number(statusText), size: Number(sizeText) };
}

/**
 * Parses a line sent by a manager, given what the runner is waiting for.
 * After `PETO` any line but `FINO` is a job name; `ERARO <reason>` is read
 * as the manager dropping the runner wherever it arrives.
 *
 * @example
 * ```ts
 * import { parseManagerLine } from "./text_codec.ts";
 * console.assert(parseManagerLine("FINO", "job").kind === "fino");
 * console.assert(parseManagerLine("ls -l", "job").kind === "job");
 * ```
 *
 * @throws {ProtocolError} If the line is not what `expect` allows.
 */
export function parseManagerLine(line: string, expect: RunnerExpectation): ToRunnerText {
  if (line.startsWith(K.ERARO_PREFIX) || line === "ERARO") {
    return { kind: "eraro", reason: line.slice(K.ERARO_PREFIX.length) };
  }
  switch (expect) {
    case "versio":
      if (line.startsWith(K.VERSIO_PREFIX) && line.length > K.VERSIO_PREFIX.length) {
        return { kind: "versio", version: line.slice(K.VERSIO_PREFIX.length) };
      }
      break;
    case "job":
      if (line === K.FINO) return { kind: "fino" };
      if (line.length > 0) return { kind: "job", name: line };
      break;
    case "preta":
      if (line === K.PRETA) return { kind: "preta" };
      break;
    case "ricevis":
      if (line === K.RICEVIS) return { kind: "ricevis" };
      break;
  }
  throw new ProtocolError(`Expected ${expect.toUpperCase()} from the manager`, line);
}

/** Encodes a runner message as one line, without terminator. */
export function formatRunnerLine(msg: FromRunnerText): string {
  switch (msg.kind) {
    case "hail":
      return K.HAIL_PREFIX + msg.host;
    case "komprenas":
      return K.KOMPRENAS;
    case "peto":
      return K.PETO;
    case "rezulto":
      return `${K.REZULTO_PREFIX}${msg.job} ${msg.status} ${msg.size}`;
    case "finoAnkau":
      return K.FINO_ANKAU;
  }
}

/** Encodes a manager message as one line, without terminator. */
export function formatManagerLine(msg: ToRunnerText): string {
  switch (msg.kind) {
    case "versio":
      return K.VERSIO_PREFIX + msg.version;
    case "job":
      return msg.name;
    case "fino":
      return K.FINO;
    case "preta":
      return K.PRETA;
    case "ricevis":
      return K.RICEVIS;
    case "eraro":
      return K.ERARO_PREFIX + clipReason(msg.reason).replace(/[\r\n]+/g, " ");
  }
}

const encoder = new TextEncoder();

/** Encodes a line and its `\n` terminator as UTF-8 bytes. */
export function encodeLine(line: string): Uint8Array {
  return encoder.encode(line + "\n");
}

/**
 * Tells whether a runner's announced version is acceptable: any `1.x`
 * (same major as {@linkcode TEXT_PROTOCOL_VERSION}).
 */
export function isAcceptedVersion(version: string): boolean {
  return /^1\.[0-9]+$/.test(version);
}

/**
 * Why a command line cannot travel as a text-protocol job name, or
 * `undefined` when it can. The protocol carries a job as one line, so a
 * name may not be empty, hold a line break or NUL, be `FINO` (the end
 * marker), be `ERARO` or start with `ERARO ` (the drop message, `ERARO
 * <reason>`, which a runner reads as such wherever it arrives; other words
 * beginning with those letters, `ERARO_LEVEL=2 make`, travel as jobs), start
 * with `VICO/1 ` (the vico extension's lines, which may share the
 * connection), or exceed the line limit once framed in `REZULTO`.
 *
 * @param name The command line.
 * @param maxLineBytes The line limit both sides use.
 */
export function whyNotCarriable(name: string, maxLineBytes: number): string | undefined {
  if (name.length === 0) return "job is empty";
  if (name === K.FINO) return `job is exactly "FINO", which the protocol reserves to end the run`;
  if (name === "ERARO" || name.startsWith(K.ERARO_PREFIX)) {
    return `job is "ERARO" or starts with "ERARO " (ERARO and a space), which the protocol reserves for errors`;
  }
  if (name === PULSE_LINE) {
    return `job is exactly "${PULSE_LINE}", which the vico extension's peers send as their pulse`;
  }
  if (name.startsWith(EXTENSION_PREFIX)) {
    return `job starts with "${EXTENSION_PREFIX}", which the vico extension reserves for its own lines`;
  }
  if (/[\r\n]/.test(name)) return "job contains a line break";
  if (name.includes("\0")) return "job contains a NUL byte, which no shell command can hold";
  // REZULTO adds its keyword, a status of up to 3 digits and a size.
  const overhead = K.REZULTO_PREFIX.length + 1 + 3 + 1 + 20;
  // A UTF-16 unit encodes to at most 3 bytes: skip encoding short names.
  if (name.length * 3 + overhead > maxLineBytes && encoder.encode(name).length + overhead > maxLineBytes) {
    return `job is too long for a ${maxLineBytes}-byte protocol line`;
  }
  return undefined;
}
