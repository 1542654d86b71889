# Part of keys.nix: keys.target as NixOps's. Every upload touches /run/keys/done (host/keys.ts, as
# NixOps's send_keys did); this unit, ordered before keys.target, waits for it, so services
# ordered after keys.target wait at boot until the keys are back (NixOps's nix/keys.nix
# `nixops-keys.service`: the same options). /run/keys is a ramfs: `done` goes at a reboot.
{ config, lib, ... }:
{
  config.systemd.services.pulumi-nixos-keys = {
    enable = lib.any (k: lib.hasPrefix "/run/" k.destDir) (lib.attrValues config.deployment.keys);
    description = "Waiting for pulumi-nixos keys";
    wantedBy = [ "keys.target" ];
    before = [ "keys.target" ];
    # As NixOps: without default dependencies (which would order it after basic.target: a cycle).
    unitConfig.DefaultDependencies = false;
    serviceConfig.Type = "oneshot";
    serviceConfig.RemainAfterExit = true;
    script = ''
      while ! [ -e /run/keys/done ]; do
        sleep 0.1
      done
    '';
  };
}
