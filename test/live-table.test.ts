/**
 * The fleet commands' live table (provider/cli/live-table.ts): on a terminal it is redrawn in
 * place as hosts answer and ends as the whole table; piped, each host's rows are written as they
 * come, after the header.
 */
import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { liveTable, TableOutput } from "../provider/cli/live-table";
import { formatTable } from "../provider/cli/table";

const HEAD = ["Name", "Status", "Host"];
const pending = [{ key: "a", row: ["alpha", "…", "10.0.0.1"] }, { key: "b", row: ["beta", "…", "10.0.0.2"] }];

/** Collects writes; `rows` is the terminal's height when a TTY. */
const sink = (tty: boolean, rows?: number): TableOutput & { writes: string[] } => {
  const writes: string[] = [];
  return { writes, isTTY: tty, rows, write: (s: string) => writes.push(s) };
};

/** What a terminal shows after the writes (cursor-up-and-clear undone). */
function screen(writes: string[]): string {
  const lines: string[] = [];
  for (const w of writes) {
    const m = /^\x1b\[(\d+)F\x1b\[J/.exec(w);
    if (m) lines.splice(lines.length - Number(m[1]));
    lines.push(...w.replace(/^\x1b\[\d+F\x1b\[J/, "").replace(/\n$/, "").split("\n"));
  }
  return lines.join("\n");
}

test("terminal: drawn with pending rows, redrawn in place per answer, the rows in their order", () => {
  const out = sink(true, 50);
  const t = liveTable(HEAD, pending, out);
  assert.equal(screen(out.writes), formatTable(HEAD, [pending[0].row, pending[1].row], true), "drawn before any host answers");
  t.set("b", [["beta", "Up", "10.0.0.2"]]);
  assert.equal(screen(out.writes), formatTable(HEAD, [pending[0].row, ["beta", "Up", "10.0.0.2"]], true));
  t.set("a", [["alpha", "Unreachable", "10.0.0.1"]]);
  t.end();
  assert.equal(screen(out.writes), formatTable(HEAD, [["alpha", "Unreachable", "10.0.0.1"], ["beta", "Up", "10.0.0.2"]], true), "the final screen is the whole table");
  assert.equal(out.writes.length, 3, "one drawing per answer");
});

test("terminal too short to redraw: the answers are appended as rows", () => {
  const out = sink(true, 3);
  const t = liveTable(HEAD, pending, out);
  t.set("a", [["alpha", "Up", "10.0.0.1"]]);
  assert.equal(out.writes.length, 2);
  assert.doesNotMatch(out.writes[1], /\x1b\[/, "no cursor movement");
  assert.match(out.writes[1], /^alpha +Up +10\.0\.0\.1\n$/);
});

test("piped: the header at once, then each host's rows when they come, aligned on the pending rows", () => {
  const out = sink(false);
  const t = liveTable(HEAD, pending, out, [0, "Unreachable".length]);
  assert.deepEqual(out.writes, ["Name   Status       Host\n"]);
  t.set("b", [["beta", "Up", "10.0.0.2"]]);
  t.set("a", [["alpha", "Unreachable", "10.0.0.1"], ["alpha", "Unreachable", "10.0.0.1"]]);
  t.end();
  assert.deepEqual(out.writes.slice(1), ["beta   Up           10.0.0.2\n", "alpha  Unreachable  10.0.0.1\n", "alpha  Unreachable  10.0.0.1\n"]);
});
