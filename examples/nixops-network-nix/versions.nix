# The seed's "lock" file: every source of truth for nixpkgs. pulumi-nixos evaluates the network
# against the stack's pin (pulumi-nixos:pins / pulumi-nixos:pin, written by `pulumi-nixos pin add`);
# the machines' configurations may still read this file (configuration/*.nix do, for the channel).
{
  "24.05" = { version = "24.05"; channel = "https://nixos.org/channels/nixos-24.05"; };
}
