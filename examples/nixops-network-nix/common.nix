# Shared by every machine (imported by configuration/*.nix): the seed's openssh settings and the thedroneely user (keys group member).
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
  # The seed's versions.nix names the channel each machine follows.
  environment.etc."nixos-channel".text = (import ./versions.nix)."24.05".channel + "\n";
}
