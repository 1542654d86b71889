# The seed's deployment keys: read from Vault by builtins.extraBuiltins.vault at evaluation time
# under NixOps + nix-plugins; under pulumi-nixos, at deploy time (never into the Nix store).
{ config, ... }:

let user = "thedroneely"; in

{
  deployment.keys = {

    thedroneely_cockpit_api_token = {
      user = user;
      text = "${builtins.extraBuiltins.vault "thedroneely/" "cockpit_api_token"}";
    };

    thedroneely_pgsql_database_password = {
      user = user; group = "postgres"; permissions = "0640";
      text = "${builtins.extraBuiltins.vault "thedroneely/" "pgsql_database_password"}";
    };

    thedroneely_ssh_known_hosts = {
      inherit user;
      text = "${builtins.extraBuiltins.vault "thedroneely/" "ssh_known_hosts"}";
    };
  };
}
