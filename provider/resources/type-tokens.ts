import type * as pulumi from "@pulumi/pulumi";

/**
 * Type tokens of the package's resources. The SDK's `dynamic.Resource` forms its type as
 * `pulumi-nodejs:dynamic/<module>:<type>` (@pulumi/pulumi dynamic/index.ts, Resource constructor);
 * the package part stays `pulumi-nodejs`, so the engine still runs them with the dynamic-provider
 * plugin, and `pulumi stack` tells a machine from a key.
 */
export const TYPE_MODULE = "nixos";
export type ResourceTypeName = "Machine" | "DeploymentKey" | "ChannelPin";
/** `pulumi-nodejs:dynamic/nixos:Machine` and so on. */
export const typeToken = (t: ResourceTypeName): string => `pulumi-nodejs:dynamic/${TYPE_MODULE}:${t}`;
/** The type every dynamic resource had before (the SDK's default when no module/type is given). */
export const OLD_TYPE = "pulumi-nodejs:dynamic:Resource";

/**
 * `opts` with an alias to the old type under the same name, so a stack written before the types
 * existed moves over without a replace (the engine finds the old state by the alias URN).
 * A caller that also renamed the resource passes its own `{ name, type: OLD_TYPE }` alias.
 */
export function withOldTypeAlias<T extends pulumi.CustomResourceOptions>(opts: T | undefined): T {
  return { ...(opts ?? {}), aliases: [...(opts?.aliases ?? []), { type: OLD_TYPE }] } as T;
}
