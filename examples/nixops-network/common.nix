# Shared by every machine: the seed's openssh settings and the thedroneely user (keys group member).
{ config, lib, pkgs, ... }: {
  services.openssh = {
    enable = true;
    permitRootLogin = "prohibit-password";
    passwordAuthentication = false;
    challengeResponseAuthentication = false;
    extraConfig = "Compression no";
  };
  users.users.thedroneely = { isNormalUser = true; extraGroups = [ "keys" ]; };
  environment.etc."motd".text = "deployed with pulumi-nixos\n";
}
