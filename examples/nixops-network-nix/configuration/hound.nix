# hound: imports what it needs, as in the seed's layout.
{ config, lib, pkgs, ... }: {
  imports = [ ../common.nix ];
  networking.hostName = "hound";
  environment.etc."role".text = "hound\n";
}
