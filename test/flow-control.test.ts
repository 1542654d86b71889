import { test } from "node:test";
import * as assert from "node:assert/strict";
import { InflightAllowance, inflightLimit } from "../provider/ssh/session";

const KiB = 1024, MiB = 1024 * KiB;

test("inflightLimit: twice a 1 Gbit/s link's bandwidth-delay product, at least 512 KiB", () => {
  assert.equal(inflightLimit(undefined), undefined);
  assert.equal(inflightLimit(0.3), 512 * KiB, "a LAN needs little out");
  assert.equal(inflightLimit(20), 5_000_000);
  assert.equal(inflightLimit(100), 25_000_000);
});

test("InflightAllowance: starts at the window, shrinks to twice what the host consumes, doubles when it is the limit", () => {
  let now = 0;
  const a = new InflightAllowance(20, 2 * MiB, () => now);
  assert.equal(a.limit, 2 * MiB, "capped by the channel's window");
  assert.equal(a.over(2 * MiB + 1, 0), true);
  // The host consumed 3 MB/s over a period (max(100 ms, 4 RTT) = 100 ms): keep twice rate × RTT, floored.
  now = 100;
  a.over(0, 300_000);
  assert.equal(a.limit, 512 * KiB);
  // At 20 MB/s: 2 × 20 kB/ms × 20 ms.
  now = 200;
  a.over(0, 300_000 + 2_000_000);
  assert.equal(a.limit, 800_000);
  // Held by the allowance itself, the consumed rate is allowance / RTT: it doubles, up to the cap.
  now = 300;
  a.over(0, 2_300_000 + 800_000 * 5);
  assert.equal(a.limit, 1_600_000);
  now = 400;
  a.over(0, 6_300_000 + 1_600_000 * 5);
  assert.equal(a.limit, 2 * MiB);
  // Inside a period nothing changes.
  now = 450;
  assert.equal(a.over(2 * MiB, 0), false);
  assert.equal(a.limit, 2 * MiB);
});

test("InflightAllowance: the period is at least four round trips on slow links", () => {
  let now = 0;
  const a = new InflightAllowance(100, Infinity, () => now);
  assert.equal(a.limit, 25_000_000);
  now = 399;
  a.over(0, 0);
  assert.equal(a.limit, 25_000_000, "not yet four RTTs");
  now = 400;
  a.over(0, 4_000_000);
  assert.equal(a.limit, 2 * 10_000 * 100, "2 × 10 kB/ms × 100 ms");
});
