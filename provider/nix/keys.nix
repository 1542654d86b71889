# NixOS module for pulumi-nixos deployment keys (what NixOps's `deployment.keys` gave you).
#
#   imports = [ /path/to/node_modules/pulumi-nixos/provider/nix/keys.nix ];
#
# pulumi-nixos adds this module (and each machine's `deployment.keys` metadata: names, owners,
# modes; never content) to every machine it evaluates, so importing it yourself is optional.
# Keys are uploaded over SSH by pulumi-nixos into /run/keys (a ramfs, 0750 root:keys); members of
# the `keys` group can read them. For each key `deployment.keys.<attr>` a unit `<attr>-key.service`
# (named after the attribute, as NixOps does, even when `name` gives the file another name) is
# active while the key file exists (started by `<attr>-key.path` when it appears), so services can
# `wants`/`after` it (and `bindsTo` it to stop when the key goes):
#
#   deployment.keys.db = { name = "db-password"; };   # /run/keys/db-password, db-key.service
#   systemd.services.myapp = { wants = [ "db-key.service" ]; after = [ "db-key.service" ]; };
{ config, lib, pkgs, ... }:
let
  keys = config.deployment.keys;
in {
  # Handing keys to owners created by the same deploy, and keys.target's wait for the uploads.
  imports = [ ./key-owners.nix ./keys-target.nix ];

  # Declared once, as NixOps's nix/keys.nix does (the same sub-options, types and defaults; `name`
  # added: the file name, the attribute name by default). `text`, `keyFile`, `keyCommand` say where
  # the deployer reads the content (a NixOps network's files; see nixops/eval-network.nix): none
  # of them reaches the system, which gets only names, owners and modes.
  options.deployment.keys = lib.mkOption {
    default = { };
    example = { password.text = "foobar"; };
    description = "The set of keys to be deployed to the machine (uploaded by pulumi-nixos into destDir/name; never into the Nix store).";
    # NixOps nix/keys.nix `keyType`/`convertOldKeyType`: a plain string is the deprecated form of
    # `{ text = …; }` (accepted, with NixOps's warning); `coercedTo` is the real lib's way to say that.
    type = lib.types.attrsOf (lib.types.coercedTo lib.types.str (text: builtins.trace
      "Using plain strings for `deployment.keys' is deprecated, please use `deployment.keys.<name>.text = \"<value>\"` instead of `deployment.keys.<name> = \"<value>\"`."
      { inherit text; }) (lib.types.submodule ({ name, config, ... }: {
      options = {
        name = lib.mkOption { type = lib.types.str; default = name; description = "File name of the key."; };
        text = lib.mkOption { type = lib.types.nullOr lib.types.str; default = null; description = "The key's content (in a NixOps network: literal text or a builtins.extraBuiltins reference)."; };
        keyFile = lib.mkOption { type = lib.types.nullOr lib.types.path; default = null; apply = v: if v == null then null else toString v; description = "A file on the deployer's machine holding the content (its path only: never copied into the store)."; };
        keyCommand = lib.mkOption { type = lib.types.nullOr (lib.types.listOf lib.types.str); default = null; description = "A command run on the deployer's machine; its stdout is the content."; };
        destDir = lib.mkOption { type = lib.types.path; default = "/run/keys"; description = "Directory of the key."; };
        path = lib.mkOption { type = lib.types.path; default = "${config.destDir}/${config.name}"; readOnly = true; internal = true; description = "The key's path: destDir + / + name."; };
        user = lib.mkOption { type = lib.types.str; default = "root"; description = "Owner of the key file."; };
        group = lib.mkOption { type = lib.types.str; default = "root"; description = "Group of the key file."; };
        permissions = lib.mkOption { type = lib.types.str; default = "0600"; example = "0640"; description = "Mode of the key file (chmod's format)."; };
      };
    })));
  };

  config = {
    # NixOS declares the keys group (gid 96, nixos/modules/config/users-groups.nix); defining it
    # here too merges (and keeps the module usable on its own).
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

    # <attr>-key.service is active while the key file exists (NixOps semantics). Named after the
    # attribute, not the file name, as NixOps's nix/keys.nix (`nameValuePair "${name}-key"`) and colmena.
    systemd.services = lib.mapAttrs' (name: k: lib.nameValuePair "${name}-key" {
      description = "pulumi-nixos deployment key ${k.name}";
      wantedBy = [ "keys.target" ];
      path = [ pkgs.inotify-tools ];
      serviceConfig = { TimeoutStartSec = "infinity"; Restart = "always"; RestartSec = "100ms"; };
      preStart = ''
        # Wait until the key appears.
        (while read f; do if [ "$f" = "${k.name}" ]; then break; fi; done \
          < <(inotifywait -qm --format '%f' -e create,move ${k.destDir})) &
        if [[ -e "${k.path}" ]]; then kill %1; exit 0; fi
        wait %1
      '';
      script = ''
        # Stay active until the key is deleted.
        inotifywait -qq -e delete_self "${k.path}" &
        if [[ ! -e "${k.path}" ]]; then echo 'key ${k.name} is gone'; kill %1; exit 0; fi
        wait %1
      '';
    }) keys;

    # As NixOps: a path unit starts <name>-key.service as soon as the key file appears.
    systemd.paths = lib.mapAttrs' (name: k: lib.nameValuePair "${name}-key" {
      wantedBy = [ "paths.target" ];
      pathConfig = { PathExists = k.path; };
    }) keys;

    # keys.target itself is NixOS's ("Security Keys", nixos/modules/system/boot/systemd.nix).
  };
}
