# The `deployment.*` options NixOps declared (nix/options.nix, nix/keys.nix; master and 1.7) that
# apply to existing hosts (targetEnv "none"), and its `networking.*IPv4`/`vpnPublicKey`, so a
# NixOps network's machines evaluate unchanged. pulumi-nixos reads them from one evaluation (eval-network.nix `info`); none of them reaches a machine's system.
# `deployment.keys` is declared once, by pulumi-nixos's keys.nix (as NixOps's nix/keys.nix, with
# text/keyFile/keyCommand), which eval-network.nix adds beside this module. Key contents (`text`)
# are only ever references here (see eval-network.nix): never secrets.
{ config, lib, name, ... }:
let
  inherit (lib) mkOption types;
in {
  # A submodule with a freeform part: NixOps's other backends' options (deployment.ec2.*, …) are
  # not declared here, yet a network using them is told which ones are unsupported (eval-network's
  # `options`) instead of failing on "does not exist". keys.nix declares deployment.keys beside it.
  options.deployment = mkOption {
    default = { };
    description = "NixOps's deployment options.";
    type = types.submodule { freeformType = types.attrsOf types.anything; options = {
    targetEnv = mkOption { type = types.str; default = "none"; description = "Only \"none\" (an existing host) is supported."; };
    targetHost = mkOption { type = types.str; default = name; description = "Host name or address to deploy to."; };
    # NixOps nix/options.nix: no default of its own, `mkDefault (head config.services.openssh.ports)`.
    targetPort = mkOption { type = types.int; description = "SSH port (default: the first of services.openssh.ports)."; };
    targetUser = mkOption { type = types.str; default = "root"; description = "SSH user (others use sudo -n)."; };
    hasFastConnection = mkOption { type = types.bool; default = false; description = "true: never compress the copy stream."; };
    alwaysActivate = mkOption { type = types.bool; default = true; description = "Re-activate on every deploy (pulumi-nixos always activates a deployed system)."; };
    tags = mkOption { type = types.listOf types.str; default = [ ]; description = "Labels for selecting machines."; };
    owners = mkOption { type = types.listOf types.str; default = [ ]; description = "Accepted and ignored (NixOps mailed them)."; };
    sshOptions = mkOption { type = types.listOf types.str; default = [ ]; description = "Not supported (ssh2 is no OpenSSH client): must stay empty."; };
    provisionSSHKey = mkOption { type = types.bool; default = true; description = "NixOps's own key provisioning (see import-nixops)."; };
    privilegeEscalationCommand = mkOption { type = types.listOf types.str; default = [ "sudo" "-H" "--" ]; description = "The command that runs privileged steps for a non-root targetUser (sudo and doas get -n: no password prompt)."; };
    name = mkOption { type = types.str; default = ""; description = "The deployment's name."; };
    uuid = mkOption { type = types.str; default = ""; description = "The deployment's UUID."; };
    arguments = mkOption { type = types.attrs; default = { }; description = "The network's arguments."; };
    # NixOps 1.7 nix/keys.nix: true put every key in the (world-readable) Nix store; pulumi-nixos
    # never does, so eval-network's `info` carries it and network-nix.ts refuses true.
    storeKeysOnMachine = mkOption { type = types.bool; default = false; description = "Only false: keys are uploaded into destDir, never put in the store."; };
    # NixOps 1.7 nix/options.nix: SSH tunnels NixOps set up between machines; refused unless empty.
    encryptedLinksTo = mkOption { type = types.listOf types.str; default = [ ]; description = "Not supported (NixOps's SSH tunnels): must stay empty."; };
    }; };
  };

  # NixOps nix/options.nix ("Computed options useful for referring to other machines"): the same
  # declarations, so networks reading them evaluate. NixOps's physical spec set them from its
  # backends' state; for existing hosts (`none`) the network itself does.
  options.networking.privateIPv4 = mkOption { example = "10.1.2.3"; type = types.str; description = "IPv4 address of this machine within the logical network."; };
  options.networking.publicIPv4 = mkOption { default = null; example = "198.51.100.123"; type = types.nullOr types.str; description = "Publicly routable IPv4 address of this machine."; };
  options.networking.vpnPublicKey = mkOption { default = null; type = types.nullOr types.str; description = "Public key of the machine's VPN key (set by NixOps)."; };
  config.deployment.targetPort = lib.mkDefault (builtins.head config.services.openssh.ports);
}
