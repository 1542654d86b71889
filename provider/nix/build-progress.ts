/**
 * Nix's build chatter as one progress line per machine. `nix-store --realise` prints the plan
 * (`these 31 derivations will be built:` and the list), then `building '….drv'...` for each
 * derivation and the builders' own output. A fleet build of ~30 derivations per host made
 * ~30 lines per host; users see `heron: building 31 derivations … 12/31` instead (again at most
 * every {@link PROGRESS_INTERVAL_MS} while it runs, and `built …` at the end). The whole log is
 * kept (bounded) and shown when the build fails, or line by line with PULUMI_NIXOS_VERBOSE=1.
 */
import { Logger } from "../util/log";

/** Minimum time between two progress lines of one build. */
export const PROGRESS_INTERVAL_MS = 10_000;
/** Bytes of build log kept for a failure. */
const LOG_KEPT_BYTES = 64 * 1024;

/** `PULUMI_NIXOS_VERBOSE=1` (or `true`): every line of Nix's build log, as Nix prints it. */
export function verboseBuilds(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(env.PULUMI_NIXOS_VERBOSE ?? "");
}

/** Reads a build's stderr line by line; see the module comment. */
export class BuildProgress {
  private total = 0;
  private started = 0;
  private planned = false;
  private kept: string[] = [];
  private keptBytes = 0;
  private lastShown = 0;
  private shownAt = 0;
  private readonly began = Date.now();

  /** @param where after the count: "" (local) or " on the host". */
  constructor(private readonly log: Logger, private readonly verbose = verboseBuilds(), private readonly where = "") {}

  /** One line of Nix's stderr. */
  line(l: string): void {
    this.keep(l);
    if (this.verbose) this.log(l);
    const plan = /^these (\d+) derivations will be built:/.exec(l) ?? (/^this derivation will be built:/.test(l) ? [l, "1"] : null);
    if (plan) {
      this.total = Number(plan[1]);
      this.planned = true;
      if (!this.verbose) this.show(true);
      return;
    }
    if (/^building '\/nix\/store\/[^']+\.drv'/.test(l)) {
      this.started++;
      if (!this.verbose) this.show(false);
    }
  }

  /** The build ended well: one closing line (none when nothing had to be built). */
  succeeded(): void {
    if (!this.planned || this.verbose) return;
    const s = ((Date.now() - this.began) / 1000).toFixed(1);
    this.log(`built ${this.total} derivation${this.total === 1 ? "" : "s"}${this.where} (${this.started}/${this.total}) in ${s} s`);
  }

  /** The build failed: its whole (kept) log, unless it was already shown line by line. */
  failed(): void {
    if (this.verbose || !this.kept.length) return;
    this.log(`build log (${this.started}/${this.total} derivations started):`);
    for (const l of this.kept) this.log(`  ${l}`);
  }

  /** The last lines of the log, for an error message. */
  tail(n = 15): string {
    return this.kept.filter((l) => l.trim()).slice(-n).join("\n");
  }

  private show(first: boolean): void {
    const now = Date.now();
    if (!first && (this.started === this.lastShown || now - this.shownAt < PROGRESS_INTERVAL_MS)) return;
    this.lastShown = this.started;
    this.shownAt = now;
    this.log(`building ${this.total} derivation${this.total === 1 ? "" : "s"}${this.where} … ${this.started}/${this.total}`);
  }

  private keep(l: string): void {
    this.kept.push(l);
    this.keptBytes += l.length + 1;
    while (this.keptBytes > LOG_KEPT_BYTES && this.kept.length > 1) this.keptBytes -= this.kept.shift()!.length + 1;
  }
}
