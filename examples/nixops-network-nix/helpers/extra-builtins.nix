# nix-plugins' extra-builtins-file, as in the seed (NixOps: --option extra-builtins-file …).
# pulumi-nixos reads it too: `vault` is always read with node-vault; other builtins built on
# `exec` run their command at deploy time.
{ exec, ... }: {
  vault = path: field: exec [ ./wrappers/vault field path ];
}
