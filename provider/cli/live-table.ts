/**
 * A table whose rows arrive one host at a time (fleet commands): a dead host must not hold back
 * the others' rows until its budget runs out.
 *  - On a terminal: the table (formatTable's boxed style) drawn at once with a pending row per
 *    host, redrawn in place as each host answers (rows stay in their order). Taller than the
 *    terminal, it cannot be redrawn: the rows are then printed as they arrive.
 *  - Piped: the header, then each host's rows as they arrive, in plain aligned columns (widths
 *    from the header and the pending rows, so most rows line up; a longer cell widens its line).
 */
import { formatTable } from "./table";

type Row = (string | number)[];

/** Rows of the table by host, filled in as hosts answer. */
export interface LiveTable {
  /** The rows of one host (replaces its pending row). */
  set(key: string, rows: Row[]): void;
  /** Every host answered (or failed): draws the final table where it still needs it. */
  end(): void;
}

/** Where a live table writes (a TTY stream or a pipe). */
export interface TableOutput { write(s: string): unknown; isTTY?: boolean; rows?: number }

/**
 * A live table with `head` and one `pending` row per key, in the order given.
 * `minWidths` are the widest values a column takes (e.g. the longest status), for piped output.
 */
export function liveTable(head: string[], pending: { key: string; row: Row }[], out: TableOutput = process.stdout, minWidths: number[] = []): LiveTable {
  const rows = new Map<string, Row[]>(pending.map((p) => [p.key, [p.row]]));
  const all = () => [...rows.values()].flat();
  if (out.isTTY) {
    let drawn = 0; // lines of the last drawing
    let redraw = true;
    const draw = () => {
      const text = formatTable(head, all(), true);
      const lines = text.split("\n").length;
      if (out.rows && Math.max(lines, drawn) >= out.rows) redraw = false;
      out.write((drawn ? `\x1b[${drawn}F\x1b[J` : "") + text + "\n");
      drawn = lines;
    };
    draw();
    return {
      set(key, r) {
        rows.set(key, r);
        if (redraw) draw(); else out.write(formatTable(head, r, false).split("\n").slice(1).join("\n") + "\n");
      },
      end() { /* the last drawing is the table */ },
    };
  }
  const widths = head.map((h, i) => Math.max(h.length, minWidths[i] ?? 0, ...pending.map((p) => String(p.row[i] ?? "").length)));
  const line = (r: Row) => r.map((c, i) => String(c ?? "").padEnd(widths[i])).join("  ").trimEnd() + "\n";
  out.write(line(head));
  return {
    set(key, r) { rows.set(key, r); for (const x of r) out.write(line(x)); },
    end() { /* every row is out */ },
  };
}
