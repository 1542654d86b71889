/**
 * Health checks run on the host before a deploy is confirmed (colmena/morph style): commands, and
 * HTTP(S) GETs made from the host itself (curl, else wget). One remote command runs them all; a
 * failure rolls the deploy back with the check's output in the error.
 */
import { shq } from "../ssh/session";

/** One health check: exactly one of `command` or `http`. */
export interface HealthCheck {
  /** Shown in logs and errors (default: the command or URL). */
  name?: string;
  /** A shell command run on the host as root; passes when it exits 0. */
  command?: string;
  /** An http:// or https:// URL fetched from the host (GET). */
  http?: string;
  /** Expected HTTP status (default 200). */
  status?: number;
  /** A substring the response body must contain. */
  bodyContains?: string;
  /** Seconds per attempt (default 10). */
  timeout?: number;
  /** Further attempts after a failure, 1 s apart (default 0). */
  retries?: number;
  /** HTTPS: accept any certificate (default false). */
  insecure?: boolean;
}

export const HEALTH_FIELDS = ["name", "command", "http", "status", "bodyContains", "timeout", "retries", "insecure"];
const MARK = "@@pulumi-nixos-health";

/** Problems of a list of checks, each naming `where[i].field` (empty when valid). */
export function healthCheckProblems(where: string, v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) return [`${where}: a list of checks ({ command } or { http })`];
  const out: string[] = [];
  v.forEach((c, i) => {
    const w = `${where}[${i}]`;
    if (!c || typeof c !== "object") { out.push(`${w}: must be an object with command or http`); return; }
    for (const k of Object.keys(c)) if (!HEALTH_FIELDS.includes(k)) out.push(`${w}.${k}: unknown field (known: ${HEALTH_FIELDS.join(", ")})`);
    const hc = c as HealthCheck;
    if ((hc.command === undefined) === (hc.http === undefined)) out.push(`${w}: give exactly one of command or http`);
    if (hc.command !== undefined && (typeof hc.command !== "string" || !hc.command.trim())) out.push(`${w}.command: a non-empty shell command`);
    if (hc.http !== undefined && (typeof hc.http !== "string" || !/^https?:\/\/[^\s]+$/.test(hc.http))) out.push(`${w}.http: an http:// or https:// URL, got '${hc.http}'`);
    if (hc.command !== undefined && (hc.status !== undefined || hc.bodyContains !== undefined)) out.push(`${w}: status and bodyContains are for http checks`);
    if (hc.status !== undefined && !(Number.isInteger(hc.status) && hc.status >= 100 && hc.status <= 599)) out.push(`${w}.status: an HTTP status (100-599)`);
    if (hc.bodyContains !== undefined && typeof hc.bodyContains !== "string") out.push(`${w}.bodyContains: a string`);
    if (hc.timeout !== undefined && !(typeof hc.timeout === "number" && hc.timeout > 0)) out.push(`${w}.timeout: a positive number of seconds`);
    if (hc.retries !== undefined && !(Number.isInteger(hc.retries) && hc.retries >= 0)) out.push(`${w}.retries: a whole number >= 0`);
    if (hc.insecure !== undefined && typeof hc.insecure !== "boolean") out.push(`${w}.insecure: true or false`);
  });
  return out;
}

export const checkName = (c: HealthCheck): string => c.name ?? (c.command !== undefined ? `command '${c.command}'` : `GET ${c.http}`);

/** The script running every check in order (each attempt under `timeout`); prints one result line per check. */
export function healthCheckScript(checks: HealthCheck[]): string {
  const lines = [
    `pnx_out=$(mktemp); pnx_body=$(mktemp); trap 'rm -f "$pnx_out" "$pnx_body"' EXIT`,
    // GET from the host: curl, else wget (its -S headers give the status).
    `pnx_get() { if command -v curl >/dev/null 2>&1; then curl -sS $4 -o "$pnx_body" -w '%{http_code}' --max-time "$2" "$1" > "$pnx_out.code" 2>"$pnx_out"; code=$(cat "$pnx_out.code"); rm -f "$pnx_out.code";` +
      ` elif command -v wget >/dev/null 2>&1; then wget -q -S -T "$2" -t 1 -O "$pnx_body" "$1" 2>"$pnx_out"; code=$(sed -n 's/^ *HTTP\\/[0-9.]* \\([0-9]*\\).*/\\1/p' "$pnx_out" | tail -n 1);` +
      ` else echo "no curl or wget on the host for an HTTP check" > "$pnx_out"; code=; fi;` +
      ` [ "$code" = "$3" ] || { echo "status \${code:-none}, expected $3" >> "$pnx_out"; return 1; }; }`,
  ];
  checks.forEach((c, i) => {
    const t = c.timeout ?? 10;
    const attempt = c.command !== undefined
      ? `timeout ${t} sh -c ${shq(c.command)} > "$pnx_out" 2>&1`
      : `pnx_get ${shq(c.http!)} ${t} ${c.status ?? 200} ${c.insecure ? "-k" : "''"}` +
        (c.bodyContains !== undefined ? ` && { grep -qF -- ${shq(c.bodyContains)} "$pnx_body" || { echo "body lacks '$(printf %s ${shq(c.bodyContains)})': $(head -c 300 "$pnx_body")" >> "$pnx_out"; false; }; }` : "");
    lines.push(
      `ok=0; for a in $(seq ${(c.retries ?? 0) + 1}); do if ${attempt}; then ok=1; break; fi; sleep 1; done`,
      `if [ $ok = 1 ]; then echo "${MARK} ${i} ok"; else echo "${MARK} ${i} fail $(tail -c 600 "$pnx_out" | tr '\\n' ' ')"; fi`,
    );
  });
  return lines.join("\n");
}

/** The failed checks' descriptions (`command 'x': <output>`), empty when all passed. */
export function parseHealthOutput(stdout: string, checks: HealthCheck[]): string[] {
  const seen = new Map<number, { ok: boolean; out: string }>();
  for (const l of stdout.split("\n")) {
    const m = new RegExp(`^${MARK} (\\d+) (ok|fail)(?: (.*))?$`).exec(l);
    if (m) seen.set(Number(m[1]), { ok: m[2] === "ok", out: (m[3] ?? "").trim() });
  }
  const failed: string[] = [];
  checks.forEach((c, i) => {
    const r = seen.get(i);
    if (!r) failed.push(`${checkName(c)}: no result`);
    else if (!r.ok) failed.push(`${checkName(c)} failed: ${r.out || "(no output)"}`);
  });
  return failed;
}
