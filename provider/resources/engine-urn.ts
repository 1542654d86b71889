import * as pulumi from "@pulumi/pulumi";

/**
 * The resource's URN as the hidden input `__urn`, for its handler's Engine.Log calls
 * (provider/util/log.ts). The SDK's dynamic-provider plugin hands handlers the inputs only (not the
 * URN the engine sent with the request), and the plugin's environment has the project but not the
 * stack (provider_plugin.go `NewProvider` sets PULUMI_NODEJS_PROJECT only), so the program, which
 * knows both, computes it: the SDK's own `createUrn` from the resource's name, type and parent,
 * once the resource is constructed (so a change of type or name follows by itself).
 *
 * The value travels as a plain promise, not as an Output of the parent's URN: that would make the
 * parent a dependency, and a component parent means every sibling (runtime/dependsOn.ts expands
 * components to their children). Keys starting with `__` are the engine's internal ones: the CLI
 * never shows them in a diff (pkg/backend/display/object_diff.go, IsInternalPropertyKey) and our
 * handlers' diffs never compare them. A state written before this input existed keeps working:
 * without `__urn` a handler logs to stderr as before.
 *
 * Usage: `const urn = engineUrn(); super(provider, name, { …, __urn: urn.input }, opts); urn.resolve(this, opts);`
 */
export function engineUrn(): { input: pulumi.Output<string>; resolve(res: pulumi.Resource, opts?: pulumi.CustomResourceOptions): void } {
  let settle!: (urn: string) => void;
  const value = new Promise<string>((r) => { settle = r; });
  return {
    input: pulumi.output(value),
    resolve(res, opts) {
      const urn = pulumi.createUrn(pulumi.resourceName(res), pulumi.resourceType(res), opts?.parent);
      // A parent whose registration failed must not hold this registration up for ever (the SDK
      // serializes inputs before it awaits the parent): then the URN is "" and the handler logs
      // to stderr. Output.promise is the SDK's (marked internal); apply is the public fallback.
      const p = (urn as unknown as { promise?: () => Promise<string> }).promise?.call(urn);
      if (p) p.then(settle, () => settle(""));
      else urn.apply((u) => { settle(u); return u; });
    },
  };
}
