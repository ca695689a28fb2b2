import assert from "node:assert/strict";
import { join } from "node:path";
import { enroll } from "../../../manager/sessions/enrollment.ts";

Deno.test("enroll: managers enrolling at once in a new state directory get one identity, each of them", async () => {
  // Two managers started together (two job lists on one host, the default
  // state directory): the second saw files the first had not finished and
  // failed ("File exists", or "holds only some of …", which advises removing
  // the first one's new identity).
  for (let round = 0; round < 5; round++) {
    const dir = join(await Deno.makeTempDir(), "manager");
    try {
      const all = await Promise.all([1, 2, 3].map(() => enroll({ stateDir: dir, hostnames: ["localhost"] })));
      assert.equal(all.filter((e) => e.created).length, 1, "one of them made the identity");
      for (const e of all) {
        assert.equal(e.fingerprint, all[0].fingerprint);
        assert.equal(e.secretText, all[0].secretText);
        assert.equal(e.tls.keyPem, all[0].tls.keyPem);
      }
      const again = await enroll({ stateDir: dir });
      assert.deepEqual([again.created, again.fingerprint], [false, all[0].fingerprint], "and it is the one kept");
    } finally {
      await Deno.remove(join(dir, ".."), { recursive: true });
    }
  }
});
