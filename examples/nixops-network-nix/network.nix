# The seed's network, as NixOps read it (nixops create -d nixos network.nix): five existing hosts.
{
  network.description = "nixos";
  network.enableRollback = true;

  # Every machine: the seed's secrets (from Vault through builtins.extraBuiltins) and user.
  defaults = { imports = [ ./secrets.nix ]; };

  heron = {
    imports = [ ./hardware/heron.nix ./configuration/heron.nix ];
    deployment.targetHost = "heron.local";
    deployment.tags = [ "web" ];
  };

  talon = {
    imports = [ ./hardware/talon.nix ./configuration/talon.nix ];
    deployment.targetHost = "talon.local";
    deployment.tags = [ "web" ];
  };

  tiger = {
    imports = [ ./hardware/tiger.nix ./configuration/tiger.nix ];
    deployment.targetHost = "tiger.local";
    deployment.tags = [ "db" ];
  };

  hound = {
    imports = [ ./hardware/hound.nix ./configuration/hound.nix ];
    deployment.targetHost = "hound.local";
    deployment.tags = [ "db" ];
  };

  # A machine may also be a function of { config, pkgs, lib, nodes, name, resources, ... }.
  pigeon = { config, lib, nodes, name, ... }: {
    imports = [ ./hardware/pigeon.nix ./configuration/pigeon.nix ];
    deployment.targetHost = "pigeon.local";
    deployment.tags = [ "mail" ];
    # nodes.<name>.config: the mail relay knows where the web machines are.
    environment.etc."relay-peers".text = lib.concatStringsSep "\n"
      (map (n: "${n} ${nodes.${n}.config.deployment.targetHost}") [ "heron" "talon" ]) + "\n";
  };
}
