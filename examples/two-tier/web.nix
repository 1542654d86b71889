# The web machine: `dbHost`, `dbSystem` and `dbPasswordFile` are module arguments given by the
# Pulumi program (Machine's specialArgs), as `pkgs` and `config` are given by NixOS.
{ dbHost, dbSystem, dbPasswordFile, ... }: {
  networking.hostName = "web";
  # What the application reads: where the database is, the system it runs, and the file the
  # password is in (the password itself never enters the Nix store: it is a DeploymentKey).
  environment.etc."web/upstream.conf".text = ''
    db_host = ${dbHost}
    db_system = ${dbSystem}
    db_password_file = ${dbPasswordFile}
  '';
}
