/**
 * The entry points' flags: one table per command drives parsing, the usage
 * text and the `VICO_*` variables; and the flag-value parsers they share.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { VicoError } from "../core/errors.ts";

/**
 * Whether a host name or address is this machine's loopback.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./flags.ts";
 * console.assert(isLoopback("127.0.0.1") && isLoopback("localhost") && !isLoopback("0.0.0.0"));
 * ```
 */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Parses a whole number flag, at least `min`. @throws {VicoError} `USAGE` */
export function intFlag(name: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) < min) {
    throw new VicoError("USAGE", `--${name} needs a whole number of at least ${min}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/**
 * Splits `HOST[:PORT]` (or `[IPv6]:PORT`).
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./flags.ts";
 * console.assert(parseHostPort("node1:9000", 7707).port === 9000);
 * console.assert(parseHostPort("node1", 7707).port === 7707);
 * ```
 * @throws {VicoError} `USAGE` on a malformed address.
 */
export function parseHostPort(text: string, defaultPort: number): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+))(?::([0-9]+))?$/.exec(text);
  if (m === null) {
    if (text.split(":").length > 2) return { hostname: text, port: defaultPort }; // bare IPv6
    throw new VicoError("USAGE", `Expected HOST[:PORT], got ${JSON.stringify(text)}`);
  }
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) throw new VicoError("USAGE", `Port ${port} is out of range 1-65535`);
  return { hostname: m[1] ?? m[2], port };
}

/**
 * One flag of a command: what `parseArgs` needs, what the usage text says of
 * it, and whether a `VICO_*` variable sets it. A command's flags are one
 * {@linkcode FlagTable}, which drives its parsing ({@linkcode parseFlags}),
 * its usage text ({@linkcode flagUsage}) and its environment
 * ({@linkcode envArgs}).
 */
export interface FlagSpec {
  /** A value (`string`) or a switch (`boolean`). */
  readonly type: "string" | "boolean";
  /** One-letter alias (`-j`). */
  readonly short?: string;
  /** The value's placeholder in the usage text (`FILE`). */
  readonly arg?: string;
  /** What the flag does, as printed: one entry a line. A flag without it is left out of the usage text. */
  readonly help?: readonly string[];
  /** Printed after a blank line before the flag: a section's title, or `""` for the blank line alone. */
  readonly heading?: string;
  /** Whether `VICO_<NAME>` sets it. @default {true} */
  readonly env?: boolean;
}

/** A command's flags, in the order its usage text lists them. */
export type FlagTable = Record<string, FlagSpec>;

/**
 * The option lines of a usage text, from a {@linkcode FlagTable}: the flag
 * (with its short form and placeholder) in a column `width` wide, then its
 * description; a flag too long for the column has its description on the
 * next line.
 *
 * @example
 * ```ts
 * import { flagUsage } from "./flags.ts";
 * const text = flagUsage({ jobs: { type: "string", short: "j", arg: "FILE", help: ["The job list."] } }, 23);
 * console.assert(text === "  -j, --jobs FILE      The job list.");
 * ```
 */
export function flagUsage(table: FlagTable, width: number): string {
  const out: string[] = [];
  const indent = " ".repeat(width);
  for (const [flag, spec] of Object.entries(table)) {
    if (spec.help === undefined) continue;
    if (spec.heading !== undefined) out.push("", ...(spec.heading === "" ? [] : [spec.heading]));
    const left = `${spec.short === undefined ? "      " : `  -${spec.short}, `}--${flag}${
      spec.arg === undefined ? "" : ` ${spec.arg}`
    }`;
    const [first, ...rest] = spec.help;
    if (first === undefined) out.push(left);
    else if (left.length < width) out.push(left.padEnd(width) + first);
    else out.push(left, indent + first);
    for (const line of rest) out.push(indent + line);
  }
  return out.join("\n");
}

/**
 * The environment variable that sets a flag: `VICO_` and the flag's name
 * upper-cased, `-` as `_`.
 *
 * @example
 * ```ts
 * import { envName } from "./flags.ts";
 * console.assert(envName("max-output") === "VICO_MAX_OUTPUT");
 * ```
 */
export function envName(flag: string): string {
  return `VICO_${flag.toUpperCase().replaceAll("-", "_")}`;
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["", "0", "false", "no", "off"]);

/**
 * Command-line arguments for the flags in `options` that are set in the
 * environment (all but those marked `env: false` and the `skip` list) (`VICO_WORKERS=8` → `--workers=8`, `VICO_PERSIST=1` →
 * `--persist`), to be put before the real arguments so the command line
 * wins. For systemd environment files and batch scripts.
 *
 * @example
 * ```ts
 * import { envArgs } from "./flags.ts";
 * const env = { VICO_WORKERS: "8", VICO_PERSIST: "yes", VICO_QUIET: "0" } as Record<string, string>;
 * const args = envArgs({ workers: { type: "string" }, persist: { type: "boolean" }, quiet: { type: "boolean" } },
 *   (name) => env[name]);
 * console.assert(args.join(" ") === "--workers=8 --persist");
 * ```
 * @param skip Flags never taken from the environment.
 * @throws {VicoError} `USAGE` for a boolean variable that is not 1/0, true/false, yes/no or on/off.
 */
export function envArgs(
  options: FlagTable,
  env: (name: string) => string | undefined,
  skip: readonly string[] = ["help", "version"],
): string[] {
  const args: string[] = [];
  for (const [flag, { type, env: fromEnv }] of Object.entries(options)) {
    if (skip.includes(flag) || fromEnv === false) continue;
    const value = env(envName(flag));
    if (value === undefined) continue;
    if (type === "string") {
      if (value !== "") args.push(`--${flag}=${value}`);
      continue;
    }
    const v = value.trim().toLowerCase();
    if (TRUE.has(v)) args.push(`--${flag}`);
    else if (!FALSE.has(v)) {
      throw new VicoError("USAGE", `${envName(flag)}=${JSON.stringify(value)}: expected 1 or 0 (true/false, yes/no)`);
    }
  }
  return args;
}

/**
 * Parses an entry point's command line, strictly, after the flags set in the
 * environment ({@linkcode envArgs}), so that the command line wins.
 *
 * @throws {VicoError} `USAGE` for a bad boolean in the environment; parseArgs' own errors for bad flags.
 */
export function parseFlags<const T extends FlagTable>(args: string[], options: T, envSkip?: readonly string[]) {
  const fromEnv = envArgs(options, (name) => Deno.env.get(name), envSkip);
  return parseArgs({ args: [...fromEnv, ...args], options, strict: true, allowPositionals: false }).values;
}

/** Prints `message` to stderr with the program name and returns `code`. */
export function complain(program: string, message: string, code: number): number {
  console.error(`${program}: ${message}`);
  return code;
}

/**
 * Splits a command line at its first word that is not an option: options
 * before it are the command's, the rest is a command template (as
 * Parallel's, so `manager -j 4 wc -l {}` keeps `-l` for `wc`). A string
 * flag's value is its next word unless written `--flag=value` or `-fVALUE`;
 * `--` ends the options.
 *
 * @example
 * ```ts
 * import { splitAtCommand } from "./flags.ts";
 * const { options, command } = splitAtCommand(["-j", "4", "-k", "wc", "-l", "{}"],
 *   { procs: { type: "string", short: "j" }, keep: { type: "boolean", short: "k" } });
 * console.assert(options.join(" ") === "-j 4 -k" && command.join(" ") === "wc -l {}");
 * ```
 */
export function splitAtCommand(args: readonly string[], table: FlagTable): { options: string[]; command: string[] } {
  const takesValue = new Set<string>();
  for (const [flag, spec] of Object.entries(table)) {
    if (spec.type !== "string") continue;
    takesValue.add(`--${flag}`);
    if (spec.short !== undefined) takesValue.add(`-${spec.short}`);
  }
  let i = 0;
  while (i < args.length) {
    const word = args[i];
    if (word === "--") return { options: args.slice(0, i), command: args.slice(i + 1) };
    if (!word.startsWith("-") || word === "-") break;
    i += takesValue.has(word) ? 2 : 1;
  }
  return { options: args.slice(0, Math.min(i, args.length)), command: args.slice(i) };
}

/** The line a usage error ends with: where the whole story is. */
export function helpPointer(program: string): string {
  return `Try '${program} --help' for the options.`;
}

/** An error's message on one line (parseArgs' own messages take several). */
export function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
}
