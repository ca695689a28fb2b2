import assert from "node:assert/strict";
import fc from "fast-check";
import {
  checkShell,
  checkShellHere,
  compileTemplate,
  expandJobs,
  jobCount,
  parseTemplateArgs,
  readSources,
  renderCommand,
  shellQuote,
  SLOT_EXPANSION,
} from "../../cli/command_template.ts";
import { VicoError } from "../../core/errors.ts";
import { CASES, HOSTILE, type ParallelCase, RECORDED } from "./parallel_cases.ts";

const encoder = new TextEncoder();

function throwsUsage(fn: () => unknown, includes = ""): void {
  assert.throws(fn, (e) => e instanceof VicoError && e.code === "USAGE" && e.message.includes(includes));
}
const decoder = new TextDecoder();

function streamOf(...chunks: (string | Uint8Array)[]): AsyncIterable<Uint8Array> {
  return ReadableStream.from(chunks.map((c) => typeof c === "string" ? encoder.encode(c) : c));
}

async function run(argv: string[], options: { cwd?: string; stdin?: string; env?: Record<string, string> } = {}) {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(options.stdin ?? ""));
  await writer.close();
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function has(program: string): Promise<boolean> {
  try {
    return (await run(["sh", "-c", `command -v ${program}`])).code === 0;
  } catch {
    return false;
  }
}

const PARALLEL = await has("parallel");
const BASH = await has("bash");

/** What vico's generated commands print, run one after another through `shell`. */
async function vicoOutput(c: ParallelCase, dir: string, shell: string): Promise<string> {
  const args = parseTemplateArgs(c.argv);
  const { sources, refused } = await readSources(args.sources, {
    stdin: streamOf(c.stdin ?? ""),
    openFile: (path) =>
      ReadableStream.from((async function* () {
        yield await Deno.readFile(`${dir}/${path}`);
      })()),
  });
  assert.deepStrictEqual(refused, []);
  const template = compileTemplate(args.command, sources.length);
  let out = "";
  for (const job of expandJobs({ template, sources })) {
    const r = await run([shell, "-c", job.command], { cwd: dir });
    assert.deepStrictEqual(r.stderr, "", job.command);
    out += r.stdout;
  }
  return out;
}

for (const c of CASES) {
  Deno.test(`expandJobs + shellQuote: ${c.name} prints what Parallel prints`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "vico-template-" });
    try {
      for (const [name, text] of Object.entries(c.files ?? {})) await Deno.writeTextFile(`${dir}/${name}`, text);
      const expected = RECORDED[c.name];
      assert.deepStrictEqual(await vicoOutput(c, dir, "/bin/sh"), expected, "under /bin/sh");
      if (BASH) assert.deepStrictEqual(await vicoOutput(c, dir, "bash"), expected, "under bash");
      if (PARALLEL) {
        const p = await run(["parallel", "--will-cite", "-k", "-j2", ...c.argv], {
          cwd: dir,
          stdin: c.stdin,
          env: { PARALLEL_SHELL: "/bin/sh" },
        });
        assert.deepStrictEqual(await vicoOutput(c, dir, "/bin/sh"), p.stdout, "against the installed parallel");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("shellQuote: any NUL-free text arrives intact through sh and bash", async () => {
  const shells = ["/bin/sh", ...(BASH ? ["bash"] : []), ...((await has("zsh")) ? ["zsh"] : [])];
  const texts = fc.sample(fc.string({ unit: "binary" }).filter((s) => !s.includes("\0")), 300)
    .concat(HOSTILE, ["\n", "a\nb", "'\n'", "\\", "\\\\'", "$'x'"]);
  for (const shell of shells) {
    const script = `printf '%s\\0' ${texts.map(shellQuote).join(" ")}`;
    const r = await run([shell, "-c", script]);
    assert.deepStrictEqual(r.stdout.split("\0").slice(0, -1), texts, shell);
  }
});

Deno.test("shellQuote: plain words stay plain, reserved words and assignments are quoted", () => {
  assert.deepStrictEqual(shellQuote("a/b-c_d.txt"), "a/b-c_d.txt");
  assert.deepStrictEqual(shellQuote("-n"), "-n");
  assert.deepStrictEqual(shellQuote("if"), "'if'");
  assert.deepStrictEqual(shellQuote("x=1"), "'x=1'");
  assert.deepStrictEqual(shellQuote("''"), "\\'\\'");
  assert.deepStrictEqual(shellQuote("a'b"), "'a'\\''b'");
});

Deno.test("parseTemplateArgs: no separator reads standard input; separators split sources", () => {
  assert.deepStrictEqual(parseTemplateArgs(["wc", "-l", "{}"]), {
    command: ["wc", "-l", "{}"],
    sources: [{ kind: "stdin", linked: false }],
  });
  assert.deepStrictEqual(parseTemplateArgs(["echo", ":::", "a", ":::+", "1", "::::", "f", "g", ":::", ":::"]).sources, [
    { kind: "args", values: ["a"], linked: false },
    { kind: "args", values: ["1"], linked: true },
    { kind: "file", path: "f", linked: false },
    { kind: "file", path: "g", linked: false },
    { kind: "args", values: [], linked: false },
    { kind: "args", values: [], linked: false },
  ]);
});

Deno.test("parseTemplateArgs: a leading :::+ and a :::: without a file are usage errors", () => {
  for (const words of [["echo", ":::+", "a"], ["echo", "::::"], ["echo", ":::", "a", "::::+"]]) {
    throwsUsage(() => parseTemplateArgs(words));
  }
});

Deno.test("compileTemplate: {N} beyond the sources is a usage error naming it", () => {
  throwsUsage(() => compileTemplate(["echo", "{3}"], 2), "{3} names source 3");
  throwsUsage(() => compileTemplate(["echo", "{0}"], 2));
  throwsUsage(() => compileTemplate(["echo", "{-3}"], 2));
});

Deno.test("compileTemplate: {#} and {%} count as replacement strings (nothing appended)", () => {
  assert.deepStrictEqual(renderCommand(compileTemplate(["echo", "{#}"], 1), ["a"], 7), "echo 7");
  assert.deepStrictEqual(renderCommand(compileTemplate(["echo", "{%}"], 1), ["a"], 7), `echo ${SLOT_EXPANSION}`);
  assert.deepStrictEqual(renderCommand(compileTemplate(["echo"], 2), ["a b", "c"], 1), "echo 'a b' c");
});

Deno.test("renderCommand: {%} is the runner's VICO_SLOT at run time, unquoted or in double quotes", async () => {
  const command = renderCommand(compileTemplate(['echo {%} "slot={%}" {%}x'], 1), ["a"], 1);
  const r = await run(["/bin/sh", "-c", command], { env: { VICO_SLOT: "3" } });
  assert.deepStrictEqual(r.stdout, "3 slot=3 3x\n");
});

Deno.test("expandJobs: an empty source gives no jobs, and jobCount agrees with the generator", () => {
  const s = (values: string[], linked = false) => ({ values, lines: values.map((_, i) => i + 1), linked });
  const template = compileTemplate(["echo"], 3);
  for (
    const sources of [
      [s(["a", "b"]), s([]), s(["x"])],
      [s(["a", "b", "c"]), s(["1", "2"]), s(["x", "y", "z"], true)],
      [s(["a"]), s(["1", "2", "3"], true), s(["x", "y"], true)],
    ]
  ) {
    const jobs = [...expandJobs({ template, sources })];
    assert.deepStrictEqual(jobs.length, jobCount(sources));
    assert.deepStrictEqual(jobs.map((j) => j.seq), jobs.map((_, i) => i + 1));
  }
});

Deno.test("expandJobs: each job carries its arguments and their source lines", async () => {
  const { sources } = await readSources(parseTemplateArgs(["echo", ":::", "a", "b", "::::", "-"]).sources, {
    stdin: streamOf("x\n\ny\n"),
  });
  const jobs = [...expandJobs({ template: compileTemplate(["echo"], 2), sources })];
  assert.deepStrictEqual(jobs.map((j) => [j.args, j.argLines]), [
    [["a", "x"], [1, 1]],
    [["a", ""], [1, 2]],
    [["a", "y"], [1, 3]],
    [["b", "x"], [2, 1]],
    [["b", ""], [2, 2]],
    [["b", "y"], [2, 3]],
  ]);
});

Deno.test("readSources: lines split across chunks, a UTF-8 character split across chunks", async () => {
  const bytes = encoder.encode("añb\ncd\n日本");
  const chunks = [...bytes].map((b) => Uint8Array.of(b));
  const { sources, refused } = await readSources([{ kind: "stdin", linked: false }], { stdin: streamOf(...chunks) });
  assert.deepStrictEqual(sources[0].values, ["añb", "cd", "日本"]);
  assert.deepStrictEqual(refused, []);
});

Deno.test("readSources: a line not valid UTF-8 and a line too long are refused by number, the rest kept", async () => {
  const { sources, refused } = await readSources([{ kind: "file", path: "f", linked: false }], {
    openFile: () =>
      streamOf("ok\n", Uint8Array.of(0x63, 0x61, 0x66, 0xe9, 0x0a), "x".repeat(50), "y".repeat(50), "\nlast\n"),
    maxLineBytes: 64,
  });
  assert.deepStrictEqual(sources[0].values, ["ok", "last"]);
  assert.deepStrictEqual(sources[0].lines, [1, 4]);
  assert.deepStrictEqual(refused, [
    { source: 1, line: 2, reason: "not valid UTF-8" },
    { source: 1, line: 3, reason: "longer than 64 bytes" },
  ]);
});

Deno.test("readSources: standard input wanted twice is a usage error", async () => {
  const specs = parseTemplateArgs(["echo", "::::", "-", "-"]).sources;
  const err = await readSources(specs, { stdin: streamOf("a\n") }).then(() => undefined, (e) => e);
  assert.deepStrictEqual(err instanceof VicoError && err.code, "USAGE");
});

Deno.test("checkShell: POSIX shells pass, csh and fish and relative paths are refused", () => {
  for (const ok of ["/bin/sh", "/bin/bash", "/usr/bin/zsh", "/usr/local/bin/bash5.2", "/bin/dash"]) {
    assert.deepStrictEqual(checkShell(ok), ok);
  }
  for (const bad of ["/bin/csh", "/usr/bin/fish", "/bin/tcsh", "bash", ""]) {
    throwsUsage(() => checkShell(bad), "--shell");
  }
});

Deno.test("checkShellHere: a --shell that is not an executable file here is a usage error naming it", async () => {
  checkShellHere("/bin/sh");
  throwsUsage(() => checkShellHere("/nonexistent/bash"), "--shell /nonexistent/bash: no such file here");
  const dir = await Deno.makeTempDir();
  try {
    const plain = `${dir}/bash`;
    await Deno.writeTextFile(plain, "#!/bin/sh\n", { mode: 0o644 });
    throwsUsage(() => checkShellHere(plain), `--shell ${plain}: not an executable file here`);
    throwsUsage(() => checkShellHere(dir), `--shell ${dir}: not an executable file here`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
