/**
 * Text from peers made safe for a terminal. Runners choose their host
 * names, jobs their commands and outputs: an escape sequence printed raw
 * would drive the operator's terminal (retitle it, hide or rewrite lines,
 * and on some set the clipboard).
 *
 * @module
 */

/**
 * `text` with its control characters (C0, DEL, C1) shown as `\xHH`.
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * console.assert(printable("a\x1b[2Jb") === "a\\x1b[2Jb");
 * ```
 */
export function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, escape);
}

/**
 * {@linkcode printable}, but line breaks and tabs stay: for text that may
 * span lines on purpose (a log message's values).
 *
 * @example
 * ```ts
 * import { printableLines } from "./printable.ts";
 * console.assert(printableLines("a\n\x1b]0;x\x07") === "a\n\\x1b]0;x\\x07");
 * ```
 */
export function printableLines(text: string): string {
  return text.replace(/(?![\n\t])\p{Cc}/gu, escape);
}

function escape(c: string): string {
  return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
}
