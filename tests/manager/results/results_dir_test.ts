import assert from "node:assert/strict";
import { join } from "node:path";
import { LOCK_FILE, MARKER_FILE, ResultsDir, ResultsDirError } from "../../../manager/results/results_dir.ts";
import { ResultsStore } from "../../../manager/results/results_store.ts";
import { tempDir } from "../../helpers/journal.ts";

/** Names and bytes of every file directly in `dir`. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of Deno.readDirSync(dir)) out[e.name] = e.isFile ? Deno.readTextFileSync(join(dir, e.name)) : "/";
  return out;
}

async function refusal(promise: Promise<unknown>): Promise<ResultsDirError> {
  const err = await promise.then(() => undefined, (e) => e);
  assert.ok(err instanceof ResultsDirError, `expected a ResultsDirError, got ${err}`);
  return err;
}

Deno.test("ResultsDir.claim creates, marks and locks; a second claim is refused naming the holder and touches nothing", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "a", "res");
  const first = await ResultsDir.claim(path, { durable: false });
  try {
    assert.equal(first.created, true);
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(join(path, MARKER_FILE))).format, 1);
    const before = contents(path);
    const err = await refusal(ResultsDir.claim(path, { durable: false }));
    assert.equal(err.problem, "in-use");
    assert.equal(err.holder?.pid, Deno.pid);
    assert.equal(err.holder?.host, Deno.hostname());
    assert.match(err.message, new RegExp(`in use by another manager: pid ${Deno.pid} on .* since \\d{4}-`));
    assert.deepEqual(contents(path), before, "the refused claim wrote nothing");
  } finally {
    first.release();
  }
  const again = await ResultsDir.claim(path, { durable: false });
  assert.equal(again.created, false, "marked and empty of results: taken again");
  again.release();
});

Deno.test("ResultsDir.claim refuses a foreign directory, a file and a newer format, leaving them as they were", async () => {
  await using tmp = await tempDir();
  const foreign = join(tmp.path, "project");
  Deno.mkdirSync(join(foreign, "tmp"), { recursive: true });
  Deno.writeTextFileSync(join(foreign, "notes.txt"), "mine");
  const file = join(tmp.path, "file");
  Deno.writeTextFileSync(file, "x");
  const newer = join(tmp.path, "newer");
  Deno.mkdirSync(newer);
  Deno.writeTextFileSync(join(newer, MARKER_FILE), JSON.stringify({ vico: "results", format: 99 }));
  Deno.writeTextFileSync(join(newer, "journal.jsonl"), "");
  for (
    const [path, pattern] of [[foreign, /is not a vico results directory/], [file, /is not a directory/], [
      newer,
      /made by a newer vico/,
    ]] as const
  ) {
    const before = Deno.statSync(path).isDirectory ? contents(path) : Deno.readTextFileSync(path);
    const err = await refusal(ResultsDir.claim(path, { durable: false }));
    assert.equal(err.problem, "not-ours");
    assert.match(err.message, pattern);
    assert.deepEqual(Deno.statSync(path).isDirectory ? contents(path) : Deno.readTextFileSync(path), before);
    assert.ok(!Deno.statSync(path).isDirectory || !(LOCK_FILE in contents(path)), "no lock file left behind");
  }
});

Deno.test("ResultsDir.claim takes a directory an earlier vico made (journal.jsonl, out/, tmp/) and marks it", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "old");
  Deno.mkdirSync(join(path, "out"), { recursive: true });
  Deno.writeTextFileSync(join(path, "journal.jsonl"), "");
  const dir = await ResultsDir.claim(path, { durable: false });
  assert.equal(dir.adopted, true);
  assert.ok(Deno.statSync(join(path, MARKER_FILE)).isFile);
  dir.release();
  // With anything else beside them it is not taken for one.
  const mixed = join(tmp.path, "mixed");
  Deno.mkdirSync(join(mixed, "out"), { recursive: true });
  Deno.writeTextFileSync(join(mixed, "journal.jsonl"), "");
  Deno.writeTextFileSync(join(mixed, "Makefile"), "all:\n");
  assert.equal((await refusal(ResultsDir.claim(mixed, { durable: false }))).problem, "not-ours");
});

Deno.test("ResultsDir.rotate moves a vico directory aside and claims a new one; never the current directory", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "res");
  const dir = await ResultsDir.claim(path, { durable: false });
  const empty = await dir.rotate();
  assert.equal(empty.movedTo, undefined, "nothing to move in an empty one");
  Deno.writeTextFileSync(join(path, "journal.jsonl"), "{}\n");
  const { dir: next, movedTo } = await empty.dir.rotate();
  try {
    assert.ok(movedTo !== undefined && movedTo.startsWith(`${path}.`));
    assert.equal(Deno.readTextFileSync(join(movedTo, "journal.jsonl")), "{}\n");
    assert.deepEqual(Object.keys(contents(path)).sort(), [LOCK_FILE, MARKER_FILE]);
    assert.equal((await refusal(ResultsDir.claim(path, { durable: false }))).problem, "in-use", "the new one is held");
    Deno.writeTextFileSync(join(path, "journal.jsonl"), "{}\n");
    const cwd = Deno.cwd();
    Deno.chdir(path);
    try {
      const err = await refusal(next.rotate());
      assert.equal(err.problem, "not-ours");
      assert.match(err.message, /--fresh cannot move it aside: it is the current directory/);
    } finally {
      Deno.chdir(cwd);
    }
    assert.ok(Deno.statSync(join(path, "journal.jsonl")).isFile, "nothing moved");
  } finally {
    next.release();
  }
});

Deno.test("ResultsDir.claim racing a --fresh rotate: exactly one holds the directory at its path, the other is refused in-use", async () => {
  await using tmp = await tempDir();
  // The second starts a varying number of file-system round trips and timer
  // turns later, so that over the rounds it meets the first at every step of
  // claim and rotate.
  const claimAndRotate = async (path: string, trips: number, turns: number) => {
    for (let i = 0; i < trips; i++) await Deno.stat(tmp.path);
    for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 0));
    const dir = await ResultsDir.claim(path, { durable: false });
    return (await dir.rotate()).dir;
  };
  for (let round = 0; round < 24 * 3 * 4; round++) {
    const path = join(tmp.path, `res${round}`);
    const seed = await ResultsDir.claim(path, { durable: false });
    Deno.writeTextFileSync(join(path, "journal.jsonl"), "{}\n");
    seed.release();
    const outcomes = await Promise.allSettled([
      claimAndRotate(path, 0, 0),
      claimAndRotate(path, round % 24, Math.floor(round / 24) % 3),
    ]);
    const won = outcomes.flatMap((o) => o.status === "fulfilled" ? [o.value] : []);
    const lost = outcomes.flatMap((o) => o.status === "rejected" ? [o.reason] : []);
    try {
      assert.equal(won.length, 1, `round ${round}: one wins, got ${won.length}: ${lost.map(String).join("; ")}`);
      assert.ok(lost[0] instanceof ResultsDirError, `round ${round}: ${lost[0]}`);
      assert.equal(lost[0].problem, "in-use", `round ${round}: ${lost[0].message}`);
      // The winner's lock is the one at the path: a third claimant is refused.
      assert.equal((await refusal(ResultsDir.claim(path, { durable: false }))).problem, "in-use", `round ${round}`);
    } finally {
      for (const w of won) w.release();
    }
  }
});

/**
 * Runs `claim` with `step` done once, as another process would, just before
 * the claim opens the lock file at `path` (after it has judged the directory).
 */
async function claimWithStepBeforeLock(path: string, step: () => void): Promise<ResultsDir> {
  const realOpen = Deno.open;
  let done = false;
  Deno.open = (file: string | URL, options?: Deno.OpenOptions) => {
    if (!done && String(file) === join(path, LOCK_FILE)) {
      done = true;
      step();
    }
    return realOpen(file, options);
  };
  try {
    return await ResultsDir.claim(path, { durable: false });
  } finally {
    Deno.open = realOpen;
  }
}

Deno.test("ResultsDir.claim: a directory moved aside and replaced by a new one after it was judged: the claim judges the new one (it gets its marker)", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "res");
  const seed = await ResultsDir.claim(path, { durable: false });
  Deno.writeTextFileSync(join(path, "journal.jsonl"), "{}\n");
  seed.release();
  // A --fresh manager moves the marked one aside and makes a new, empty one.
  const dir = await claimWithStepBeforeLock(path, () => {
    Deno.renameSync(path, `${path}.old`);
    Deno.mkdirSync(path);
  });
  try {
    assert.deepEqual(Object.keys(contents(path)).sort(), [LOCK_FILE, MARKER_FILE]);
    assert.equal(dir.created, true);
  } finally {
    dir.release();
  }
});

Deno.test("ResultsDir.claim: a foreign directory put at the path after the old one was judged is refused and left untouched", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "res");
  (await ResultsDir.claim(path, { durable: false })).release();
  const err = await refusal(claimWithStepBeforeLock(path, () => {
    Deno.renameSync(path, `${path}.old`);
    Deno.mkdirSync(path);
    Deno.writeTextFileSync(join(path, "thesis.tex"), "years of work");
  }));
  assert.equal(err.problem, "not-ours", err.message);
  assert.deepEqual(contents(path), { "thesis.tex": "years of work" }, "no lock file left in it");
});

Deno.test("ResultsDir.claim: a dangling journal.jsonl or marker link is not-ours, not a directory moved under it", async () => {
  await using tmp = await tempDir();
  for (const name of ["journal.jsonl", MARKER_FILE]) {
    const path = join(tmp.path, `res-${name}`);
    Deno.mkdirSync(path);
    Deno.symlinkSync(join(tmp.path, "nowhere"), join(path, name));
    if (name === MARKER_FILE) Deno.writeTextFileSync(join(path, "notes.txt"), "mine");
    const err = await refusal(ResultsDir.claim(path, { durable: false }));
    assert.equal(err.problem, "not-ours", err.message);
  }
});

Deno.test("ResultsDir.claim: a link at .vico-results, .vico-lock or journal.jsonl is not-ours, and nothing is written through it", async () => {
  await using tmp = await tempDir();
  for (const name of [MARKER_FILE, LOCK_FILE, "journal.jsonl"]) {
    const target = join(tmp.path, `precious-${name}`);
    Deno.writeTextFileSync(target, "years of work\n");
    const path = join(tmp.path, `res-${name}`);
    // A vico directory (for the lock and the journal), or one holding only the link (for the marker).
    if (name === MARKER_FILE) Deno.mkdirSync(path);
    else (await ResultsDir.claim(path, { durable: false })).release();
    if (name === LOCK_FILE) Deno.removeSync(join(path, name));
    Deno.symlinkSync(target, join(path, name));
    const err = await refusal(ResultsDir.claim(path, { durable: false }));
    assert.equal(err.problem, "not-ours", `${name}: ${err.message}`);
    assert.match(err.message, new RegExp(`its ${name.replace(".", "\\.")} is not a plain file`));
    assert.equal(Deno.readTextFileSync(target), "years of work\n", `${name}: the link's target is untouched`);
  }
});

Deno.test("ResultsDir.claim: a claim cut short while writing the marker leaves a directory the next claim takes", async () => {
  await using tmp = await tempDir();
  const path = join(tmp.path, "res");
  Deno.mkdirSync(path);
  Deno.writeTextFileSync(join(path, `${MARKER_FILE}.tmp`), '{"vico":"res');
  Deno.writeTextFileSync(join(path, LOCK_FILE), "");
  const dir = await ResultsDir.claim(path, { durable: false });
  try {
    assert.deepEqual(Object.keys(contents(path)).sort(), [LOCK_FILE, MARKER_FILE]);
  } finally {
    dir.release();
  }
});

Deno.test("ResultsDir.claim: a link at out/, files/ or tmp/ is not-ours, and nothing is written through it", async () => {
  await using tmp = await tempDir();
  for (const name of ["out", "files", "tmp"]) {
    const target = join(tmp.path, `precious-${name}`);
    Deno.mkdirSync(target);
    Deno.writeTextFileSync(join(target, "notes.txt"), "years of work\n");
    const path = join(tmp.path, `res-${name}`);
    (await ResultsDir.claim(path, { durable: false })).release();
    Deno.symlinkSync(target, join(path, name));
    // Opened anyway, a result with output and a returned file would go through the link.
    const err = await refusal(
      ResultsStore.open(path, { durable: false }).then(async (store) => {
        const out = store.stageOutput();
        await out.write(new TextEncoder().encode("job output\n"));
        const file = store.stageOutput();
        await file.write(new TextEncoder().encode("returned\n"));
        const when = new Date().toISOString();
        const fields = { key: "k", line: 1, command: "true", status: 0, host: "h", start: when, end: when, attempt: 1 };
        await store.commit(fields, out, [{ name: "r.txt", staged: file }]).finally(() => store.close());
      }),
    );
    assert.equal(err.problem, "not-ours", `${name}: ${err.message}`);
    assert.match(err.message, new RegExp(`its ${name} is not a directory`));
    assert.deepEqual(contents(target), { "notes.txt": "years of work\n" }, `${name}: the link's target is untouched`);
  }
});
