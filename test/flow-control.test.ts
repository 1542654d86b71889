import { test } from "node:test";
import * as assert from "node:assert/strict";
import { inflightLimit } from "../provider/ssh/session";

test("inflightLimit: twice a 1 Gbit/s link's bandwidth-delay product, at least 512 KiB", () => {
  assert.equal(inflightLimit(undefined), undefined, "no RTT measured: no limit but the window");
  assert.equal(inflightLimit(0.3), 512 * 1024, "a LAN needs little out");
  assert.equal(inflightLimit(20), 5_000_000);
  assert.equal(inflightLimit(100), 25_000_000);
});
