# tiger: imports what it needs, as in the seed's layout.
{ config, lib, pkgs, ... }: {
  imports = [ ../common.nix ];
  networking.hostName = "tiger";
  environment.etc."role".text = "tiger\n";
}
