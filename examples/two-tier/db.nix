# The database machine: nothing of the program reaches it.
{ ... }: {
  networking.hostName = "db";
  environment.etc."db/role".text = "database\n";
}
