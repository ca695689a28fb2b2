/**
 * Reads systemd unit files and environment files the way systemd does, as
 * far as vico's units use them, so that tests can start a runner with the
 * exact command line and environment a unit would give it.
 *
 * @module
 */

/** The repository's unit files and example environment files. */
export const SYSTEMD_DIR = new URL("../../scripts/systemd/", import.meta.url).pathname;

/** A unit file: each section's settings in order (a key may repeat). */
export type Unit = Map<string, [key: string, value: string][]>;

/** Parses a unit file (systemd.syntax(7)): sections, `Key=Value`, comments, backslash continuations. */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      section = [];
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0 || section === undefined) throw new Error(`Not a unit file line: ${line}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** Every value of `key` in `section`. */
export function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** The last value of `key` in `section` (the one in force), or undefined. */
export function value(unit: Unit, section: string, key: string): string | undefined {
  return values(unit, section, key).at(-1);
}

/** Expands the specifiers vico's units use: %i (instance), %S (/var/lib), %%. */
export function expandSpecifiers(text: string, specifiers: { i?: string; S?: string } = {}): string {
  return text.replace(/%([%iS])/g, (_, c: string) => {
    if (c === "%") return "%";
    const v = specifiers[c as "i" | "S"];
    if (v === undefined) throw new Error(`No value for specifier %${c}`);
    return v;
  });
}

/**
 * Parses an environment file (systemd.exec(5), EnvironmentFile=): `VAR=VALUE`
 * lines, `#` and `;` comment lines, blank lines, values optionally in quotes.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.replace(/\\\n/g, "").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/);
    if (!m) throw new Error(`Not an environment file line: ${line}`);
    let v = m[2];
    if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.at(-1) === v[0]) v = v.slice(1, -1);
    env[m[1]] = v;
  }
  return env;
}

/**
 * Splits an ExecStart= command line into words and expands `${VAR}` and
 * `$VAR` words from `env`, as systemd does (a `$VAR` word that is unset
 * disappears; `${VAR}` inside a word is replaced).
 */
export function execArgv(commandLine: string, env: Record<string, string>): string[] {
  const words: string[] = [];
  for (const m of commandLine.matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)) {
    const word = m[1] ?? m[2] ?? m[3];
    const whole = word.match(/^\$([A-Za-z_][A-Za-z0-9_]*)$/);
    if (whole) {
      if (env[whole[1]] !== undefined) words.push(...env[whole[1]].split(/\s+/).filter((w) => w !== ""));
      continue;
    }
    words.push(word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => env[name] ?? ""));
  }
  return words;
}

/** Reads a unit file of the repository. */
export async function readUnit(name: string): Promise<Unit> {
  return parseUnit(await Deno.readTextFile(SYSTEMD_DIR + name));
}
