{ config, lib, pkgs, ... }: {
  networking.hostName = "web";
  environment.etc."motd".text = "web, deployed from TypeScript\n";
}
