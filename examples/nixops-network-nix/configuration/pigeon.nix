# pigeon: imports what it needs, as in the seed's layout.
{ config, lib, pkgs, ... }: {
  imports = [ ../common.nix ];
  networking.hostName = "pigeon";
  environment.etc."role".text = "pigeon\n";
}
