/**
 * Job lines that run without their shell. A job is `sh -c LINE`; when the
 * line is only plain words naming a program (`./sim --seed 3`,
 * `sleep 0.05`), the shell does nothing but look the program up, fork and
 * wait for it, which is one more process and about 1 ms of CPU a job on the
 * development VM. GNU make runs such recipe lines itself for the same
 * reason. Here the runner starts the program as the shell would have, with
 * what the shell would have given it:
 *
 * - the same argv (the words, split at blanks) and the same program (the
 *   same `PATH` lookup: the line runs directly only when the job's `PATH` is
 *   the runner's own, which `posix_spawnp` searches);
 * - the same environment: dash drops variables whose names a shell cannot
 *   have (the line then runs through the shell), and sets `PWD` to the
 *   working directory (its own rule: `PWD` as inherited when it is absolute
 *   and names that directory, else the physical path);
 * - the same status and output when the program is killed: dash exits
 *   128+N and prints the signal's name (`Terminated`, `Segmentation fault
 *   (core dumped)`; nothing for SIGINT and SIGPIPE), so the runner adds that
 *   line; a program the runner itself ends (timeout, stop) gets 128+SIGTERM,
 *   as its shell, ended by that first SIGTERM, would have;
 * - whatever cannot start (not found, not executable, a script with no
 *   `#!`) is started again through the shell, which then says and does
 *   exactly what it always did (`sh: 1: x: not found`, 127).
 *
 * Only where `/bin/sh` is dash (Debian, Ubuntu): bash as `sh` exports more
 * (`SHLVL`, `_`), so elsewhere every line goes through the shell, as do
 * lines with anything a shell would read (quotes, `$`, globs, `~`,
 * redirections, `;`, an assignment), a first word that is a shell builtin
 * or keyword, `--shell`, and jobs under a state directory's gate.
 *
 * @module
 */

/** Bytes a plain word may hold: none of them means anything to a POSIX shell. */
const PLAIN = /^[ \t]*[A-Za-z0-9_./,:@%+-]+(?:[ \t]+[A-Za-z0-9_./,:@%+=-]+)*[ \t]*$/;

/** First words the shell itself runs or reads (dash's builtins and reserved words, and bash's). */
const SHELL_WORDS = new Set([
  // dash builtins
  ".",
  ":",
  "[",
  "alias",
  "bg",
  "break",
  "cd",
  "chdir",
  "command",
  "continue",
  "echo",
  "eval",
  "exec",
  "exit",
  "export",
  "false",
  "fc",
  "fg",
  "getopts",
  "hash",
  "jobs",
  "kill",
  "local",
  "printf",
  "pwd",
  "read",
  "readonly",
  "return",
  "set",
  "shift",
  "test",
  "times",
  "trap",
  "true",
  "type",
  "ulimit",
  "umask",
  "unalias",
  "unset",
  "wait",
  // reserved words
  "case",
  "do",
  "done",
  "elif",
  "else",
  "esac",
  "fi",
  "for",
  "function",
  "if",
  "in",
  "select",
  "then",
  "time",
  "until",
  "while",
  // bash's own, should a line ever reach bash
  "builtin",
  "caller",
  "compgen",
  "complete",
  "compopt",
  "coproc",
  "declare",
  "dirs",
  "disown",
  "enable",
  "help",
  "history",
  "let",
  "logout",
  "mapfile",
  "popd",
  "pushd",
  "readarray",
  "shopt",
  "source",
  "suspend",
  "typeset",
]);

/**
 * The argv a job line runs as without its shell, or `undefined` when the
 * shell has something to do with it (see the module).
 *
 * @example
 * ```ts
 * import { directCommand } from "./direct_command.ts";
 * console.assert(directCommand("./sim --seed 3")?.join("|") === "./sim|--seed|3");
 * console.assert(directCommand("echo hi") === undefined); // a builtin
 * console.assert(directCommand("ls *.txt") === undefined); // a glob
 * ```
 */
export function directCommand(line: string): string[] | undefined {
  if (!PLAIN.test(line)) return undefined;
  const words = line.trim().split(/[ \t]+/);
  return SHELL_WORDS.has(words[0]) ? undefined : words;
}

/** A name a shell variable can have: dash passes on only these. */
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether dash would pass on every variable of `env` as it is. */
export function shellKeepsEnv(env: Readonly<Record<string, string>>): boolean {
  for (const name in env) if (!SHELL_NAME.test(name)) return false;
  return true;
}

/** Signals a shell does not name when its command dies of them (SIGINT 2, SIGPIPE 13). */
const UNNAMED_SIGNALS = new Set([2, 13]);

/**
 * The line dash prints when its command dies of `signal` (its
 * `sprint_status`), or `""`.
 *
 * @param name The signal's name from libc's `strsignal`.
 */
export function shellSignalLine(signal: number, name: string, coreDumped: boolean): string {
  if (UNNAMED_SIGNALS.has(signal)) return "";
  return `${name}${coreDumped ? " (core dumped)" : ""}\n`;
}

let dash: boolean | undefined;

/** Whether `/bin/sh` is dash here (read once). */
export function shIsDash(): boolean {
  if (dash !== undefined) return dash;
  try {
    dash = /(^|\/)dash$/.test(Deno.realPathSync("/bin/sh"));
  } catch {
    dash = false;
  }
  return dash;
}

let lastPwd: { inherited: string | undefined; cwd: string; pwd: string } | undefined;

/**
 * `PWD` as dash sets it in the working directory `cwd`: `inherited` when it
 * is absolute and names that directory, else `cwd` (the physical path).
 * The last answer is kept: the runner's text jobs all run in one place.
 */
export function shellPwd(inherited: string | undefined, cwd: string): string {
  if (lastPwd !== undefined && lastPwd.inherited === inherited && lastPwd.cwd === cwd) return lastPwd.pwd;
  let pwd = cwd;
  if (inherited !== undefined && inherited.startsWith("/") && inherited !== cwd) {
    try {
      const a = Deno.statSync(inherited);
      const b = Deno.statSync(cwd);
      if (a.dev === b.dev && a.ino !== null && a.ino === b.ino) pwd = inherited;
    } catch {
      // Gone or unreadable: the physical path, as dash's own stat would fail.
    }
  } else if (inherited === cwd) {
    pwd = inherited;
  }
  lastPwd = { inherited, cwd, pwd };
  return pwd;
}
