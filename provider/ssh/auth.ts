/**
 * How one hop authenticates, in OpenSSH's order (ssh(1) "AUTHENTICATION"; sshconnect2.c
 * `pubkey_prepare`: agent keys first, then the IdentityFiles, then password methods as
 * PreferredAuthentications lists them), preceded by an explicit `connection.privateKey` (what the
 * operator gave for this resource). Key material from the agent or ~/.ssh is read at connect time
 * and never leaves this process: nothing here reaches state, logs or argv.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { utils } from "ssh2";
import type { Connection } from "../connection";

/**
 * OpenSSH's default identity files, in the order ssh tries them when no IdentityFile is configured
 * (readconf.c `fill_default_options`: id_rsa, id_ecdsa, id_ecdsa_sk, id_ed25519, id_ed25519_sk, id_xmss, id_dsa).
 */
export const DEFAULT_IDENTITY_FILES = ["id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"];

/** `~/.ssh/<default identity>` paths of the user running the deploy. */
export function defaultIdentityFiles(): string[] {
  const home = process.env.HOME || os.homedir();
  return DEFAULT_IDENTITY_FILES.map((f) => path.join(home, ".ssh", f));
}

/** One authentication attempt as ssh2's `authHandler` takes it, with what to call it in messages. */
interface Attempt { label: string; auth: Record<string, unknown> }

/** Methods for a hop, and what was tried/skipped (for the failure message). */
export interface AuthPlan {
  /** ssh2 `authHandler`: the next attempt, or false when none is left. */
  handler: (methodsLeft: string[] | null, partial: boolean | null, cb: (next: unknown) => void) => unknown;
  /** Labels of the attempts made so far. */
  tried: string[];
  /** Identities passed over, with why (encrypted without passphrase, unreadable format). */
  skipped: string[];
  /** Whether there was anything at all to try. */
  empty: boolean;
}

/** Where `~` stands in a path, for messages. */
function tildify(p: string): string {
  const home = process.env.HOME || os.homedir();
  return home && p.startsWith(home + "/") ? "~" + p.slice(home.length) : p;
}

/** The agent socket a hop uses: its own, else SSH_AUTH_SOCK; only when it exists. */
export function agentSocket(hop: Pick<Connection, "agentSocketPath">): string | undefined {
  const sock = hop.agentSocketPath || process.env.SSH_AUTH_SOCK;
  if (!sock) return undefined;
  try { return fs.statSync(sock).isSocket() ? sock : undefined; } catch { return undefined; }
}

/**
 * The attempts for `hop`: explicit private key, agent, identity files (the ssh config's, else
 * OpenSSH's defaults), password (`password`, then `keyboard-interactive` answered with it).
 */
export function authPlan(hop: Connection, username: string): AuthPlan {
  const attempts: Attempt[] = [];
  const skipped: string[] = [];
  if (hop.privateKey) {
    // An explicit key that cannot be read is the operator's mistake, said at once (ssh2 would
    // skip it silently and report only that authentication failed).
    const parsed = utils.parseKey(hop.privateKey, hop.privateKeyPassword);
    if (parsed instanceof Error) throw new Error(parsed.message);
    attempts.push({ label: "connection.privateKey", auth: { type: "publickey", username, key: hop.privateKey, passphrase: hop.privateKeyPassword } });
  }
  const sock = agentSocket(hop);
  if (sock) attempts.push({ label: `ssh-agent (${tildify(sock)})`, auth: { type: "agent", username, agent: sock } });
  const configured = !!hop.identityFiles?.length;
  for (const f of configured ? hop.identityFiles! : defaultIdentityFiles()) {
    let text: string;
    try { text = fs.readFileSync(f, "utf8"); } catch { continue; } // absent: OpenSSH skips it silently too
    const label = `${tildify(f)}${configured ? " (IdentityFile)" : ""}`;
    // An encrypted identity ssh would prompt for: nothing can prompt here (use the agent).
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) {
      skipped.push(/encrypted/i.test(parsed.message) ? `${label}: encrypted (add it to ssh-agent: ssh-add ${tildify(f)})` : `${label}: ${parsed.message}`);
      continue;
    }
    if (hop.privateKey && text.trim() === hop.privateKey.trim()) continue; // tried already
    attempts.push({ label, auth: { type: "publickey", username, key: text } });
  }
  if (hop.password) {
    attempts.push({ label: "connection.password", auth: { type: "password", username, password: hop.password } });
    const password = hop.password;
    attempts.push({
      label: "connection.password (keyboard-interactive)",
      auth: { type: "keyboard-interactive", username, prompt: (_n: string, _i: string, _l: string, prompts: { echo?: boolean }[], finish: (a: string[]) => void) => finish(prompts.map(() => password)) },
    });
  }
  const tried: string[] = [];
  let i = 0;
  return {
    tried, skipped, empty: attempts.length === 0,
    handler: (methodsLeft) => {
      // Only methods the server still accepts (null before its first answer).
      while (i < attempts.length) {
        const a = attempts[i++];
        const type = a.auth.type === "agent" ? "publickey" : String(a.auth.type);
        if (methodsLeft && !methodsLeft.includes(type)) continue;
        tried.push(a.label);
        return a.auth;
      }
      return false;
    },
  };
}

/** "tried …; skipped …": what an authentication failure message lists. */
export function describeAttempts(plan: AuthPlan): string {
  const t = plan.tried.length ? `tried ${plan.tried.join(", ")}` : "nothing to try (no connection.privateKey, no ssh-agent, no identity file in ~/.ssh, no password)";
  return plan.skipped.length ? `${t}; skipped ${plan.skipped.join("; ")}` : t;
}
