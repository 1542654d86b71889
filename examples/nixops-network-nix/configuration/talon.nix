# talon: imports what it needs, as in the seed's layout.
{ config, lib, pkgs, ... }: {
  imports = [ ../common.nix ];
  networking.hostName = "talon";
  environment.etc."role".text = "talon\n";
}
