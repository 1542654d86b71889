# Part of keys.nix: hands each key to its owner at activation. A key whose user or group did not
# exist when it was uploaded (the same deploy creates them) waits root-owned 0600 (host/keys.ts);
# after NixOS's `users` activation script created the accounts, this chowns and chmods it, as
# NixOps's `nixops-keys` activation script did (nix/keys.nix: "the configured owning user or group
# may not have existed when first uploaded", stringAfter [ "users" "groups" ]).
{ config, lib, ... }:
let
  q = lib.escapeShellArg;
  handOver = k: ''
    if [ -f ${q k.path} ] && getent passwd ${q k.user} >/dev/null && getent group ${q k.group} >/dev/null; then
      chown ${q "${k.user}:${k.group}"} ${q k.path} && chmod ${q k.permissions} ${q k.path}
    fi
  '';
in {
  config.system.activationScripts.pulumi-nixos-key-owners = lib.stringAfter [ "users" "groups" ]
    (lib.concatStringsSep "" (map handOver (lib.attrValues config.deployment.keys)));
}
