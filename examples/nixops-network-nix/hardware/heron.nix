# Hardware of heron (on real NixOS: nixos-generate-config's hardware-configuration.nix).
{ ... }: {
  boot.loader.grub.device = "/dev/sda";
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
}
