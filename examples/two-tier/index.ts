/**
 * Two tiers: `db`, then `web`, whose NixOS configuration takes values the program knows only once
 * `db` is deployed — the address it was reached at and the system it runs — and the path of a
 * DeploymentKey holding the database password (the password itself stays out of the Nix store).
 * A preview before `db` exists plans `web` as "known after specialArgs.dbHost is known".
 *
 * Stack config `two-tier:`: `hosts` ({ db: <address>, web: <address> }), `sshPrivateKeyFile`,
 * `dbPassword` (`pulumi config set --secret two-tier:dbPassword …`), and `pin` ({ url, sha256 }
 * of a nixpkgs channel, see `pulumi-nixos pin add`) or `nixpkgs` (a local nixpkgs checkout).
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { DeploymentKey, Machine } from "pulumi-nixos";

const config = new pulumi.Config();
const hosts = config.requireObject<{ db: string; web: string }>("hosts");
const privateKey = pulumi.secret(fs.readFileSync(config.require("sshPrivateKeyFile"), "utf8"));
const pin = config.getObject<{ url: string; sha256: string }>("pin");
const nixpkgs = pin ? { pin } : { nixPath: [`nixpkgs=${config.require("nixpkgs")}`] };

const db = new Machine("db", {
  connection: { host: hosts.db, privateKey },
  configuration: path.join(__dirname, "db.nix"),
  ...nixpkgs,
});

const webConnection = { host: hosts.web, privateKey };
const dbPassword = new DeploymentKey("db-password", {
  connection: webConnection,
  text: config.requireSecret("dbPassword"),
  permissions: "0600",
});

const web = new Machine("web", {
  connection: webConnection,
  configuration: path.join(__dirname, "web.nix"),
  ...nixpkgs,
  // Module arguments of web.nix: Outputs of other resources, never secrets (a secret is refused).
  specialArgs: {
    dbHost: db.host,
    dbSystem: db.systemPath,
    dbPasswordFile: dbPassword.path,
  },
  // A web host still booting (created by another resource of the program) is waited for.
  waitForSsh: 120,
}, { dependsOn: [dbPassword] });

export const dbSystem = db.systemPath;
export const webSystem = web.systemPath;
