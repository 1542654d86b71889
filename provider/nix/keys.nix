# NixOS module for pulumi-nixos deployment keys (what NixOps's `deployment.keys` gave you).
#
#   imports = [ /path/to/node_modules/pulumi-nixos/provider/nix/keys.nix ];
#
# pulumi-nixos adds this module (and each machine's `deployment.keys` metadata: names, owners,
# modes; never content) to every machine it evaluates, so importing it yourself is optional.
# Keys are uploaded over SSH by pulumi-nixos into /run/keys (a ramfs, 0750 root:keys); members of
# the `keys` group can read them. For each key `<name>` a unit `<name>-key.service` is active while
# the key file exists (started by `<name>-key.path` when it appears), so services can `wants`/`after`
# it (and `bindsTo` it to stop when the key goes):
#
#   systemd.services.myapp = { wants = [ "db-password-key.service" ]; after = [ "db-password-key.service" ]; };
{ config, lib, pkgs, ... }:
let
  keys = config.deployment.keys;
  keyPath = name: k: "${k.destDir or "/run/keys"}/${k.name or name}";
in {
  options.deployment.keys = lib.mkOption {
    default = { };
    description = "Deployment keys uploaded by pulumi-nixos (metadata only: the content never enters the Nix store).";
    type = lib.types.attrsOf (lib.types.submodule ({ name, ... }: {
      options = {
        name = lib.mkOption { type = lib.types.str; default = name; description = "File name of the key."; };
        destDir = lib.mkOption { type = lib.types.str; default = "/run/keys"; description = "Directory of the key."; };
        user = lib.mkOption { type = lib.types.str; default = "root"; description = "Owner of the key file."; };
        group = lib.mkOption { type = lib.types.str; default = "root"; description = "Group of the key file."; };
        permissions = lib.mkOption { type = lib.types.str; default = "0600"; description = "Mode of the key file."; };
      };
    }));
  };

  config = {
    users.groups.keys = { };

    # /run/keys lives in RAM: a ramfs, so keys are never swapped out or left on disk.
    system.activationScripts.pulumi-nixos-keys = lib.stringAfter [ "users" "groups" ] ''
      mkdir -p /run/keys
      if ! grep -q ' /run/keys ramfs ' /proc/mounts 2>/dev/null; then
        mount -t ramfs -o mode=0750 ramfs /run/keys 2>/dev/null || true
      fi
      chown root:keys /run/keys
      chmod 0750 /run/keys
    '';

    # <name>-key.service is active while the key file exists (NixOps semantics).
    systemd.services = lib.mapAttrs' (name: k: lib.nameValuePair "${k.name or name}-key" {
      description = "pulumi-nixos deployment key ${k.name or name}";
      wantedBy = [ "keys.target" ];
      path = [ pkgs.inotify-tools ];
      serviceConfig = { TimeoutStartSec = "infinity"; Restart = "always"; RestartSec = "100ms"; };
      preStart = ''
        # Wait until the key appears.
        (while read f; do if [ "$f" = "${k.name or name}" ]; then break; fi; done \
          < <(inotifywait -qm --format '%f' -e create,move ${k.destDir or "/run/keys"})) &
        if [[ -e "${keyPath name k}" ]]; then kill %1; exit 0; fi
        wait %1
      '';
      script = ''
        # Stay active until the key is deleted.
        inotifywait -qq -e delete_self "${keyPath name k}" &
        if [[ ! -e "${keyPath name k}" ]]; then echo 'key ${k.name or name} is gone'; kill %1; exit 0; fi
        wait %1
      '';
    }) keys;

    # As NixOps: a path unit starts <name>-key.service as soon as the key file appears.
    systemd.paths = lib.mapAttrs' (name: k: lib.nameValuePair "${k.name or name}-key" {
      wantedBy = [ "paths.target" ];
      pathConfig = { PathExists = keyPath name k; };
    }) keys;

    systemd.targets.keys = { description = "pulumi-nixos deployment keys"; };
  };
}
