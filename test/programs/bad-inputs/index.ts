/**
 * Test program for what an operator sees on bad input (test/operator-errors.test.ts): standalone
 * Machines built from stack config `bad-inputs:machines` (name → { host, port?, proxy?, keys? }),
 * each with a prebuilt systemPath so nothing is evaluated.
 */
import * as pulumi from "@pulumi/pulumi";
import { Machine } from "../../../provider";

interface Spec { host: string; port?: number; proxy?: { host: string }; keys?: Record<string, Record<string, string>>; lifted?: boolean }

const config = new pulumi.Config();
const machines = config.requireObject<Record<string, Spec>>("machines");
for (const [name, m] of Object.entries(machines)) {
  const connection = { host: m.host, ...(m.port ? { port: m.port } : {}), ...(m.proxy ? { proxy: m.proxy } : {}), privateKey: pulumi.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nunused\n-----END OPENSSH PRIVATE KEY-----\n") };
  new Machine(name, {
    // `lifted`: the connection arrives as an Output, as another resource's output would.
    connection: m.lifted ? pulumi.output(connection) : connection,
    systemPath: `/nix/store/${"0".repeat(32)}-nixos-system-${name}`,
    keys: m.keys,
  });
}
