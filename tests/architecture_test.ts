/**
 * The tree's import rules, checked over the source's import graph so that
 * they stay true: the layers import only downwards, `manager/` and `runner/`
 * never import each other (the entry points and `cli/` compose them), and
 * nothing imports in a cycle.
 *
 * @module
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = normalize(new URL("../", import.meta.url).pathname);
/** Folders of the product's source (tests, benchmarks and scripts may import anything). */
const SOURCE_DIRS = ["core", "util", "io", "protocol", "transport", "manager", "runner", "cli"];
const ENTRY_POINTS = ["mod.ts", "manager.ts", "runner.ts"];

/**
 * What each folder may import besides itself. Lowest first: `core/` is pure
 * (no `Deno.*` but the clock), `util/` and `io/` are the shared helpers,
 * `protocol/` the wire formats, `transport/` the byte streams; `manager/`
 * and `runner/` are the two sides; `cli/` and the entry points wire them.
 */
const MAY_IMPORT: Record<string, string[]> = {
  core: [],
  util: ["core"],
  io: ["core", "util"],
  protocol: ["core"],
  transport: ["core", "util", "io", "protocol"],
  manager: ["core", "util", "io", "protocol", "transport"],
  runner: ["core", "util", "io", "protocol", "transport"],
  cli: ["core", "util", "io", "protocol", "transport", "manager", "runner"],
};

/** The relative imports of one module (JSDoc examples left out). */
function importsOf(file: string): string[] {
  const text = Deno.readTextFileSync(join(ROOT, file)).replace(/\/\*[\s\S]*?\*\//g, "");
  const out: string[] = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^"';]*?from\s*["'](\.{1,2}\/[^"']+)["']|import\s*\(\s*["'](\.{1,2}\/[^"']+)["']|^\s*import\s*["'](\.{1,2}\/[^"']+)["']/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const target = normalize(join(dirname(file), spec));
    if (target.endsWith(".ts")) out.push(target);
  }
  return out;
}

function sourceFiles(): string[] {
  const files = [...ENTRY_POINTS];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(join(ROOT, dir))) {
      const path = join(dir, e.name);
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) files.push(path);
    }
  };
  for (const dir of SOURCE_DIRS) {
    try {
      walk(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return files;
}

/** The import graph of the product's source, module → modules it imports. */
export function importGraph(): Map<string, string[]> {
  return new Map(sourceFiles().map((f) => [f, importsOf(f)]));
}

/** Every cycle found by a depth-first walk, each as the path that closes it. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

const folderOf = (file: string) => file.includes("/") ? file.slice(0, file.indexOf("/")) : "";

Deno.test("importGraph() covers the product's source", () => {
  const graph = importGraph();
  for (const file of ENTRY_POINTS) assertEquals(graph.has(file), true);
  for (const [file, targets] of graph) {
    for (const target of targets) {
      const exists = (() => {
        try {
          return Deno.statSync(join(ROOT, target)).isFile;
        } catch {
          return false;
        }
      })();
      assertEquals(exists, true, `${file} imports ${target}, which is not there`);
    }
  }
});

Deno.test("source folders import only the layers below them", () => {
  const wrong: string[] = [];
  for (const [file, targets] of importGraph()) {
    const from = folderOf(file);
    if (from === "") continue; // entry points wire everything
    for (const target of targets) {
      const to = folderOf(target);
      if (to === from) continue;
      if (!MAY_IMPORT[from].includes(to)) wrong.push(`${file} -> ${relative(ROOT, join(ROOT, target))}`);
    }
  }
  assertEquals(wrong, []);
});

Deno.test("source modules import in no cycle", () => {
  assertEquals(findCycles(importGraph()).map((c) => c.join(" -> ")), []);
});

Deno.test("only util/command.ts starts processes (new Deno.Command)", () => {
  const starters = [...importGraph().keys()].filter((file) =>
    /new Deno\.Command\(/.test(Deno.readTextFileSync(join(ROOT, file)).replace(/\/\*[\s\S]*?\*\//g, ""))
  );
  assertEquals(starters, ["util/command.ts"]);
});
