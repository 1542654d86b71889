# The `deployment.*` options NixOps declared (nix/options.nix, nix/keys.nix) that apply to existing
# hosts (targetEnv "none"), so a NixOps network's machines evaluate unchanged. pulumi-nixos reads
# them from one evaluation (eval-network.nix `info`); none of them reaches a machine's system.
# Key contents (`text`) are only ever references here (see eval-network.nix): never secrets.
{ lib, name, ... }:
let
  inherit (lib) mkOption types;
  keyOptions = types.submodule ({ name, ... }: {
    options = {
      text = mkOption { type = types.nullOr types.str; default = null; description = "The key's content (a reference from builtins.extraBuiltins, or literal text)."; };
      keyFile = mkOption { type = types.nullOr types.path; default = null; apply = v: if v == null then null else toString v; description = "A file on the operator's machine."; };
      keyCommand = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "A command run on the operator's machine; its stdout is the content."; };
    };
  });
in {
  options.deployment = {
    targetEnv = mkOption { type = types.str; default = "none"; description = "Only \"none\" (an existing host) is supported."; };
    targetHost = mkOption { type = types.str; default = name; description = "Host name or address to deploy to."; };
    targetPort = mkOption { type = types.int; default = 22; description = "SSH port."; };
    targetUser = mkOption { type = types.str; default = "root"; description = "SSH user (others use sudo -n)."; };
    hasFastConnection = mkOption { type = types.bool; default = false; description = "true: never compress the copy stream."; };
    alwaysActivate = mkOption { type = types.bool; default = true; description = "Re-activate on every deploy (pulumi-nixos always activates a deployed system)."; };
    tags = mkOption { type = types.listOf types.str; default = [ ]; description = "Labels for selecting machines."; };
    keys = mkOption { type = types.attrsOf keyOptions; default = { }; description = "Deployment keys (content source; placement in keys.nix)."; };
    owners = mkOption { type = types.listOf types.str; default = [ ]; description = "Accepted and ignored (NixOps mailed them)."; };
    sshOptions = mkOption { type = types.listOf types.str; default = [ ]; description = "Not supported (ssh2 is no OpenSSH client): must stay empty."; };
    provisionSSHKey = mkOption { type = types.bool; default = true; description = "NixOps's own key provisioning (see import-nixops)."; };
    privilegeEscalationCommand = mkOption { type = types.listOf types.str; default = [ "sudo" "-H" "--" ]; description = "pulumi-nixos uses sudo -n for a non-root targetUser."; };
    name = mkOption { type = types.str; default = ""; description = "The deployment's name."; };
    uuid = mkOption { type = types.str; default = ""; description = "The deployment's UUID."; };
    arguments = mkOption { type = types.attrs; default = { }; description = "The network's arguments."; };
  };
}
