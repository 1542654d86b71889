# heron: imports what it needs, as in the seed's layout.
{ config, lib, pkgs, ... }: {
  imports = [ ../common.nix ];
  networking.hostName = "heron";
  environment.etc."role".text = "heron\n";
}
