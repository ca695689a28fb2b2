/**
 * The file-name rule of the binary protocol: every name in File, Run, Ret and
 * a log is a relative path inside the node's per-task directory.
 *
 * @module
 */

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
  if (name.startsWith("/")) return `name ${JSON.stringify(name)} is absolute`;
  if (name.includes("\0")) return "name contains a NUL byte";
  if (name.includes("\\")) return `name ${JSON.stringify(name)} contains a backslash`;
  for (const segment of name.split("/")) {
    if (segment === "") return `name ${JSON.stringify(name)} has an empty segment`;
    if (segment === "." || segment === "..") {
      return `name ${JSON.stringify(name)} has a "${segment}" segment`;
    }
  }
  return undefined;
}
