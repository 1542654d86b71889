import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs } from "../connection";

/**
 * A resource's `connection` input with defaults applied, field by field, so that only the private
 * key is a secret in state (a host name stays readable) and the key is a secret even when the
 * program passed it as plain text.
 */
export function connectionInputs(c: pulumi.Input<ConnectionArgs>): pulumi.Input<Record<string, unknown>> {
  if (pulumi.Output.isInstance(c) || c instanceof Promise) {
    // Already an Output (e.g. another resource's `connection`): lift its fields.
    const o = pulumi.output(c);
    return {
      host: o.host,
      port: o.apply((x) => x.port ?? 22),
      user: o.apply((x) => x.user ?? "root"),
      privateKey: pulumi.secret(o.apply((x) => x.privateKey ?? "")),
      hostPublicKey: o.apply((x) => x.hostPublicKey ?? ""),
    };
  }
  const args = c as ConnectionArgs;
  return {
    host: args.host,
    port: args.port ?? 22,
    user: args.user ?? "root",
    privateKey: args.privateKey === undefined ? undefined : pulumi.secret(args.privateKey),
    hostPublicKey: args.hostPublicKey,
  };
}
