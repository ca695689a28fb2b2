import assert from "node:assert/strict";
import { JobRequest } from "../../../manager/sessions/job_request.ts";

Deno.test("JobRequest.request returns an answer given inside the ask without holding", async () => {
  const request = new JobRequest<number>();
  let held = false;
  const answer = await request.request(() => request.answer(7), (later) => {
    held = true;
    return later;
  });
  assert.equal(answer, 7);
  assert.equal(held, false);
  assert.equal(request.pending, false);
});

Deno.test("JobRequest.request holds until the scheduler answers later", async () => {
  const request = new JobRequest<string>();
  let asked = 0;
  const answer = request.request(() => asked++, (later) => later);
  assert.equal(asked, 1);
  assert.equal(request.pending, true);
  request.answer("release");
  assert.equal(await answer, "release");
  assert.equal(request.pending, false);
});

Deno.test("JobRequest.request ends the request when the hold fails (the peer left); a late answer is ignored", async () => {
  const request = new JobRequest<string>();
  await assert.rejects(request.request(() => {}, () => Promise.reject(new Error("peer left"))), /peer left/);
  assert.equal(request.pending, false);
  request.answer("too late");
});

Deno.test("JobRequest.ask returns an answer given inside the ask at once, and a promise of a later one", async () => {
  const request = new JobRequest<number>();
  assert.deepEqual(request.ask(() => request.answer(7)), { answer: 7 });
  assert.equal(request.pending, false);
  const later = request.ask(() => {});
  assert.ok(later instanceof Promise);
  assert.equal(request.pending, true);
  request.answer(8);
  assert.equal(await later, 8);
  assert.equal(request.pending, false);
  assert.throws(() =>
    request.ask(() => {
      throw new Error("scheduler broke");
    }), /scheduler broke/);
  assert.equal(request.pending, false);
});
