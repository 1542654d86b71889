import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs } from "../connection";
import { connectionInputs } from "./connection-inputs";
import { runtimeProvider } from "./runtime-provider";
import { engineUrn } from "./engine-urn";
import { checkArgs } from "../schema";
import { TYPE_MODULE, withOldTypeAlias } from "./type-tokens";

const channelProvider = runtimeProvider("channel");

/** Inputs of a {@link ChannelPin}. */
export interface ChannelPinArgs {
  /** The host whose (root) channel is pinned. */
  connection: pulumi.Input<ConnectionArgs>;
  /** Channel or tarball URL of the pinned nixpkgs. */
  url: pulumi.Input<string>;
  /** sha256 of the unpacked tree (`pulumi-nixos pin add` computes it). */
  sha256: pulumi.Input<string>;
  /** Channel name (default `nixos`). */
  channel?: pulumi.Input<string>;
  /**
   * How logs, errors and `pulumi-nixos targets` name the pin (default: the resource name). A
   * {@link Network} names its pins `<network>-<machine>-channel` and labels them `<machine>/channel`.
   */
  label?: string;
}

/**
 * A host's nix channel set to a pinned nixpkgs (`nix-channel --add URL nixos && nix-channel --update
 * nixos`), verified against the pin's sha256 on the host before anything changes. Refresh reports a
 * changed URL or content as drift; delete restores the channel's previous URL (or removes it).
 */
export class ChannelPin extends pulumi.dynamic.Resource {
  declare readonly channel: pulumi.Output<string>;
  declare readonly url: pulumi.Output<string>;
  /** Store path of the unpacked channel on the host. */
  declare readonly storePath: pulumi.Output<string>;
  /** `.version` of the channel's nixpkgs. */
  declare readonly nixpkgsVersion: pulumi.Output<string>;
  /** The channel's URL before the pin ("" when there was none). */
  declare readonly previousUrl: pulumi.Output<string>;

  constructor(name: string, args: ChannelPinArgs, opts?: pulumi.CustomResourceOptions) {
    // Every field type-checked before anything runs (provider/schema: one schema for all inputs).
    checkArgs("ChannelPin", name, args);
    const urn = engineUrn();
    super(channelProvider, name, {
      kind: "channelPin",
      resource: args.label ?? name,
      __urn: urn.input,
      connection: connectionInputs(args.connection),
      url: args.url,
      sha256: args.sha256,
      channel: args.channel ?? "nixos",
      storePath: undefined, nixpkgsVersion: undefined, previousUrl: undefined,
    }, withOldTypeAlias(opts), TYPE_MODULE, "ChannelPin");
    urn.resolve(this, opts);
  }
}
