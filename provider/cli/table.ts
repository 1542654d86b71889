/**
 * The one table style of every command (fleet commands, `lab status`, `import-nixops`): on a
 * terminal cli-table3's boxed table with a coloured head; piped, plain columns aligned with
 * spaces (what `awk`, `grep` and `column` expect: no box characters, no pipes, no colour).
 */
export function formatTable(head: string[], rows: (string | number)[][], tty: boolean): string {
  const cells = rows.map((r) => r.map(String));
  if (tty) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const Table = require("cli-table3");
    const t = new Table({ head, style: { head: ["cyan"] } });
    for (const r of cells) t.push(r);
    return t.toString();
  }
  const all = [head, ...cells];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

/** Prints a table to stdout in the style for where stdout goes. */
export function printTable(head: string[], rows: (string | number)[][]): void {
  console.log(formatTable(head, rows, !!process.stdout.isTTY));
}
