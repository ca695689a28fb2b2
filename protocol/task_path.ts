/**
 * The file-name rule of the binary protocol: every name in File, Run, Ret and
 * a log is a relative path inside the node's per-task directory.
 *
 * @module
 */

/**
 * A name quoted for a message, cut short if long (a hostile peer's 60 000-byte
 * name must not swell every reason and log line).
 *
 * @example
 * ```ts
 * import { quoteName } from "./task_path.ts";
 * console.assert(quoteName("a.txt") === '"a.txt"');
 * console.assert(quoteName("n".repeat(1000)).length < 120);
 * ```
 */
export function quoteName(name: string): string {
  if (name.length <= 80) return JSON.stringify(name);
  return `${JSON.stringify(name.slice(0, 60))}… (${name.length} characters)`;
}

/**
 * Why `name` is not an acceptable task path, or `undefined` if it is. A task
 * path is `/`-separated, relative, with no empty, `.` or `..` segment, and
 * holds no NUL or backslash.
 *
 * @example
 * ```ts
 * import { whyBadTaskPath } from "./task_path.ts";
 * console.assert(whyBadTaskPath("in/data.csv") === undefined);
 * console.assert(whyBadTaskPath("../etc/passwd") !== undefined);
 * ```
 */
export function whyBadTaskPath(name: string): string | undefined {
  if (name.length === 0) return "name is empty";
  if (name.startsWith("/")) return `name ${quoteName(name)} is absolute`;
  if (name.includes("\0")) return "name contains a NUL byte";
  if (name.includes("\\")) return `name ${quoteName(name)} contains a backslash`;
  for (const segment of name.split("/")) {
    if (segment === "") return `name ${quoteName(name)} has an empty segment`;
    if (segment === "." || segment === "..") {
      return `name ${quoteName(name)} has a "${segment}" segment`;
    }
  }
  return undefined;
}
