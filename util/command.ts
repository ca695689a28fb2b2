/**
 * The one place a process is started. The jobs' processes
 * (`runner/exec/process_runner.ts`), the cgroup helper shell, `stat(1)`
 * and `systemd-notify(1)` all start here, so that what starts a process is
 * easy to find and to change (a faster spawn, say) in one place;
 * `tests/architecture_test.ts` checks that nothing else does.
 *
 * @module
 */

/** Starts `program` and returns the running child. @throws what `Deno.Command` throws (not found, denied). */
export function startProcess(program: string, options: Deno.CommandOptions): Deno.ChildProcess {
  return new Deno.Command(program, options).spawn();
}

/** Runs `program` to its end and returns its status and output. */
export function processOutput(program: string, options: Deno.CommandOptions): Promise<Deno.CommandOutput> {
  return new Deno.Command(program, options).output();
}

/** {@linkcode processOutput}, blocking: only for start-up checks that run once. */
export function processOutputSync(program: string, options: Deno.CommandOptions): Deno.CommandOutput {
  return new Deno.Command(program, options).outputSync();
}
