/** Aligned tables (cli-table3) like NixOps's, colored only on a terminal. */
export function printTable(head: string[], rows: (string | number)[][]): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const Table = require("cli-table3");
  const tty = !!process.stdout.isTTY;
  const t = new Table({
    head,
    style: tty ? { head: ["cyan"] } : { head: [], border: [] },
    chars: tty ? undefined : { top: "", "top-mid": "", "top-left": "", "top-right": "", bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "", left: "|", "left-mid": "", mid: "", "mid-mid": "", right: "|", "right-mid": "", middle: "|" },
  });
  for (const r of rows) t.push(r.map(String));
  console.log(t.toString());
}
