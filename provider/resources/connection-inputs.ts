import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs, ProxyConnectionArgs } from "../connection";

/** Fields that are secrets wherever they appear (also in bastions). */
const SECRET_FIELDS = ["privateKey", "privateKeyPassword", "password"] as const;

/** One hop's fields with the secrets made Pulumi secrets (plain text given or not). */
function hopInputs(args: ProxyConnectionArgs & { hostPublicKey?: pulumi.Input<string> }, isTarget: boolean): Record<string, unknown> {
  // Port and user only when given: unset, the ssh config's Port/User apply (else 22 and root);
  // given, even as 22 or root, they win over it.
  const out: Record<string, unknown> = { host: args.host };
  if (args.port !== undefined) out.port = args.port;
  if (args.user !== undefined) out.user = args.user;
  for (const k of SECRET_FIELDS) if (args[k] !== undefined) out[k] = pulumi.secret(args[k]!);
  for (const k of ["agentSocketPath", "dialErrorLimit", "perDialTimeout"] as const) if (args[k] !== undefined) out[k] = args[k];
  // The target keeps hostPublicKey as its primary name; `hostKey` (@pulumi/command's) is its alias.
  const pin = isTarget ? (args.hostPublicKey ?? args.hostKey) : args.hostKey;
  if (pin !== undefined) { out.hostKey = pin; if (isTarget) out.hostPublicKey = pin; }
  if (args.proxy !== undefined) {
    out.proxy = pulumi.Output.isInstance(args.proxy) || args.proxy instanceof Promise
      ? pulumi.output(args.proxy).apply((p) => (p ? pulumi.output(hopInputs(p, false)) : undefined))
      : hopInputs(args.proxy as ProxyConnectionArgs, false);
  }
  return out;
}

/**
 * A resource's `connection` input with defaults applied, field by field, so that only the private
 * key, its passphrase and passwords are secrets in state (a host name stays readable) and they are
 * secrets even when the program passed them as plain text.
 */
export function connectionInputs(c: pulumi.Input<ConnectionArgs>): pulumi.Input<Record<string, unknown>> {
  if (pulumi.Output.isInstance(c) || c instanceof Promise) {
    // Already an Output (e.g. another resource's `connection`): lift its fields.
    const o = pulumi.output(c) as pulumi.Output<ConnectionArgs & Record<string, unknown>>;
    const field = <T>(f: (x: ConnectionArgs) => T) => o.apply(f as (x: unknown) => T);
    return {
      host: o.host,
      port: field((x) => x.port ?? 0),
      user: field((x) => x.user ?? ""),
      privateKey: pulumi.secret(field((x) => x.privateKey ?? "")),
      privateKeyPassword: pulumi.secret(field((x) => x.privateKeyPassword ?? "")),
      password: pulumi.secret(field((x) => x.password ?? "")),
      agentSocketPath: field((x) => x.agentSocketPath ?? ""),
      dialErrorLimit: field((x) => x.dialErrorLimit ?? 0),
      perDialTimeout: field((x) => x.perDialTimeout ?? 0),
      hostPublicKey: field((x) => x.hostPublicKey ?? x.hostKey ?? ""),
      hostKey: field((x) => x.hostPublicKey ?? x.hostKey ?? ""),
      proxy: o.apply((x) => (x.proxy ? pulumi.output(hopInputs(x.proxy as ProxyConnectionArgs, false)) : undefined)),
      hostKeyPolicy: field((x) => x.hostKeyPolicy ?? ""),
      sshConfig: field((x) => x.sshConfig ?? ""),
      privilegeEscalationCommand: field((x) => x.privilegeEscalationCommand ?? []),
    };
  }
  const args = c as ConnectionArgs;
  return {
    ...hopInputs(args, true),
    ...(args.hostKeyPolicy !== undefined ? { hostKeyPolicy: args.hostKeyPolicy } : {}),
    ...(args.sshConfig !== undefined ? { sshConfig: args.sshConfig } : {}),
    ...(args.privilegeEscalationCommand !== undefined ? { privilegeEscalationCommand: args.privilegeEscalationCommand } : {}),
  };
}
