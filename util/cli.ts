/**
 * Small helpers shared by the entry points: flag values, addresses and
 * exit codes.
 *
 * @module
 */

import { VicoError } from "../protocol/errors.ts";

/** Exit codes of `manager` and `runner` (documented in the README). */
export const ExitCode = Object.freeze({
  /** Manager: every job exited 0. Runner: the manager had no more jobs. */
  OK: 0,
  /** Manager: some job exited non-zero. Runner: connection lost, dropped, or protocol error. */
  FAILED: 1,
  /** Bad flags or an invalid job list: nothing ran. */
  USAGE: 2,
  /** Manager: could not start (port in use, results directory unusable). Runner: version refused. */
  CANNOT_START: 3,
  /** Runner: the manager could not be verified (TLS certificate, secret) or refused this runner's proof. */
  UNTRUSTED: 4,
});

/**
 * Whether a host name or address is this machine's loopback.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./cli.ts";
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
 * import { parseHostPort } from "./cli.ts";
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

/** Prints `message` to stderr with the program name and returns `code`. */
export function complain(program: string, message: string, code: number): number {
  console.error(`${program}: ${message}`);
  return code;
}
