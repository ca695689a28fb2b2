/**
 * Command lines run both by GNU Parallel (`parallel --will-cite -k ...`) and
 * by vico's template, with what Parallel 20221122 printed for each,
 * recorded for machines without Parallel.
 *
 * @module
 */

/** One comparison case. */
export interface ParallelCase {
  /** Test name. */
  readonly name: string;
  /** The words after `parallel -k`: template and sources. */
  readonly argv: readonly string[];
  /** Standard input, for sources read from it. */
  readonly stdin?: string;
  /** Files written before the run (name relative to the run's directory → content). */
  readonly files?: Readonly<Record<string, string>>;
}

/** Names that break naive quoting. */
export const HOSTILE = [
  "a b",
  "it's",
  "$HOME",
  "back\\slash",
  "tab\there",
  "ünïcødé ✓ 日本",
  "-n",
  "--",
  "*",
  "",
  "a'b\"c",
  "`id`",
  "$(id)",
  "!x",
  "~",
  ";ls",
  "x=1",
  "'",
  "''",
  "\\'",
  "a  b ",
  "{}",
  "%s",
  "if",
];

const P = "printf '[%s]\\n'";

/** The cases. */
export const CASES: ParallelCase[] = [
  { name: "cartesian product, first source outermost", argv: ["echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"] },
  { name: "three sources", argv: ["echo", "{3}{2}{1}", ":::", "a", "b", ":::", "1", "2", ":::", "x", "y"] },
  { name: "no replacement string appends the arguments", argv: ["echo", ":::", "a", "b", ":::", "1", "2"] },
  { name: "{} with several sources", argv: [P, "{}", ":::", "a b", "c", ":::", "1"] },
  { name: "hostile arguments through {}", argv: [P, "{}", ":::", ...HOSTILE] },
  { name: "hostile arguments appended", argv: [P, ":::", ...HOSTILE] },
  { name: "hostile arguments inside a word", argv: [P, "x{}y", ":::", ...HOSTILE] },
  {
    name: "path replacement strings",
    argv: [
      "printf '%s|' {} {.} {/} {//} {/.} {#}; echo",
      ":::",
      "dir.x/file",
      "a/b.tar.gz",
      "plain",
      ".hidden",
      "a/.hid",
      "/abs/x.y",
      "a/",
      "x.",
      ".",
      "/",
      "//a",
      "a//b",
      "a/b/",
      "sp ace/f i.le",
      "it's/a b.c d",
      "",
    ],
  },
  {
    name: "numbered replacement strings",
    argv: [
      "printf '%s|' {1} {1.} {1/} {1//} {1/.} {2} {-1} {2/.}; echo",
      ":::",
      "d/f.c",
      "x y/z.tar.gz",
      ":::",
      "q/r.s",
    ],
  },
  { name: "{.} with several sources", argv: [P, "{.}", ":::", "a.x", ":::", "1.y", "b"] },
  { name: ":::+ links to the previous source", argv: ["echo", "{1}-{2}", ":::", "a", "b", "c", ":::+", "1", "2"] },
  {
    name: ":::+ in a product",
    argv: ["echo", "{1}-{2}-{3}", ":::", "a", "b", ":::", "x", "y", ":::+", "1", "2", "3"],
  },
  { name: "{#} numbers the jobs", argv: ["echo", "{#}", "{}", ":::", "a", "b", ":::", "1", "2"] },
  {
    name: "arguments from a file",
    argv: [P, "{}", "::::", "args.txt"],
    files: { "args.txt": HOSTILE.join("\n") + "\n" },
  },
  {
    name: "two files and a linked file",
    argv: ["echo", ":::", "A", "::::", "f1", "::::+", "f2"],
    files: { f1: "x\ny\nz\n", f2: "1\n2\n" },
  },
  { name: "arguments from standard input", argv: [P, "{}"], stdin: HOSTILE.join("\n") + "\n" },
  { name: "standard input without a final newline", argv: ["echo"], stdin: "p q\n\nr" },
  { name: "standard input as a file", argv: ["echo", "{1}{2}", ":::", "a", "b", "::::", "-"], stdin: "1\n2\n" },
  { name: "no command: the arguments are the commands", argv: [":::", "echo a", "echo 'b  c'"] },
  { name: "the issue's example", argv: ["echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"] },
  { name: "a line break in an argument makes several arguments", argv: [P, ":::", "a\nb", "c\n", "\nd", "x\n\ny"] },
  { name: "command words are shell text", argv: ["echo", "x;", "echo", "{}", ":::", "a b"] },
];

/** What `PARALLEL_SHELL=/bin/sh parallel --will-cite -k` (20221122) printed for each case, by name. */
export const RECORDED: Readonly<Record<string, string>> = {
  "cartesian product, first source outermost": "a-1\na-2\nb-1\nb-2\n",
  "three sources": "x1a\ny1a\nx2a\ny2a\nx1b\ny1b\nx2b\ny2b\n",
  "no replacement string appends the arguments": "a 1\na 2\nb 1\nb 2\n",
  "{} with several sources": "[a b]\n[1]\n[c]\n[1]\n",
  "hostile arguments through {}":
    "[a b]\n[it's]\n[$HOME]\n[back\\slash]\n[tab\there]\n[ünïcødé ✓ 日本]\n[-n]\n[--]\n[*]\n[]\n[a'b\"c]\n[`id`]\n[$(id)]\n[!x]\n[~]\n[;ls]\n[x=1]\n[']\n['']\n[\\']\n[a  b ]\n[{}]\n[%s]\n[if]\n",
  "hostile arguments appended":
    "[a b]\n[it's]\n[$HOME]\n[back\\slash]\n[tab\there]\n[ünïcødé ✓ 日本]\n[-n]\n[--]\n[*]\n[]\n[a'b\"c]\n[`id`]\n[$(id)]\n[!x]\n[~]\n[;ls]\n[x=1]\n[']\n['']\n[\\']\n[a  b ]\n[{}]\n[%s]\n[if]\n",
  "hostile arguments inside a word":
    "[xa by]\n[xit'sy]\n[x$HOMEy]\n[xback\\slashy]\n[xtab\therey]\n[xünïcødé ✓ 日本y]\n[x-ny]\n[x--y]\n[x*y]\n[xy]\n[xa'b\"cy]\n[x`id`y]\n[x$(id)y]\n[x!xy]\n[x~y]\n[x;lsy]\n[xx=1y]\n[x'y]\n[x''y]\n[x\\'y]\n[xa  b y]\n[x{}y]\n[x%sy]\n[xify]\n",
  "path replacement strings":
    "dir.x/file|dir.x/file|file|dir.x|file|1|\na/b.tar.gz|a/b.tar|b.tar.gz|a|b.tar|2|\nplain|plain|plain|.|plain|3|\n.hidden||.hidden|.||4|\na/.hid|a/|.hid|a||5|\n/abs/x.y|/abs/x|x.y|/abs|x|6|\na/|a/||.||7|\nx.|x|x.|.|x|8|\n.||.|.||9|\n/|/||/||10|\n//a|//a|a|/|a|11|\na//b|a//b|b|a|b|12|\na/b/|a/b/||a||13|\nsp ace/f i.le|sp ace/f i|f i.le|sp ace|f i|14|\nit's/a b.c d|it's/a b|a b.c d|it's|a b|15|\n|||.||16|\n",
  "numbered replacement strings":
    "d/f.c|d/f|f.c|d|f|q/r.s|q/r.s|r|\nx y/z.tar.gz|x y/z.tar|z.tar.gz|x y|z.tar|q/r.s|q/r.s|r|\n",
  "{.} with several sources": "[a]\n[1]\n[a]\n[b]\n",
  ":::+ links to the previous source": "a-1\nb-2\n",
  ":::+ in a product": "a-x-1\na-y-2\nb-x-1\nb-y-2\n",
  "{#} numbers the jobs": "1 a 1\n2 a 2\n3 b 1\n4 b 2\n",
  "arguments from a file":
    "[a b]\n[it's]\n[$HOME]\n[back\\slash]\n[tab\there]\n[ünïcødé ✓ 日本]\n[-n]\n[--]\n[*]\n[]\n[a'b\"c]\n[`id`]\n[$(id)]\n[!x]\n[~]\n[;ls]\n[x=1]\n[']\n['']\n[\\']\n[a  b ]\n[{}]\n[%s]\n[if]\n",
  "two files and a linked file": "A x 1\nA y 2\n",
  "arguments from standard input":
    "[a b]\n[it's]\n[$HOME]\n[back\\slash]\n[tab\there]\n[ünïcødé ✓ 日本]\n[-n]\n[--]\n[*]\n[]\n[a'b\"c]\n[`id`]\n[$(id)]\n[!x]\n[~]\n[;ls]\n[x=1]\n[']\n['']\n[\\']\n[a  b ]\n[{}]\n[%s]\n[if]\n",
  "standard input without a final newline": "p q\n\nr\n",
  "standard input as a file": "a1\na2\nb1\nb2\n",
  "no command: the arguments are the commands": "a\nb  c\n",
  "the issue's example": "a-1\na-2\nb-1\nb-2\n",
  "a line break in an argument makes several arguments": "[a]\n[b]\n[c]\n[]\n[]\n[d]\n[x]\n[]\n[y]\n",
  "command words are shell text": "x\na b\n",
};
