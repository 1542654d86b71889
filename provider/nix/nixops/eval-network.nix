# A NixOps network expression evaluated as NixOps's nix/eval-machine-info.nix does, for pulumi-nixos:
# the network files (merged as `nixops create a.nix b.nix`, with `require`), called with `args`
# when they are functions; each machine = its definitions from every file + `defaults` + the
# deployment options module, evaluated by <nixpkgs/nixos/lib/eval-config.nix> with
# `{ nodes, name, resources, uuid, deploymentName }`. `info` is the deployment data (one
# evaluation for the whole network); `nodes.<name>.config.system.build.toplevel` each system.
# NixOps 2's `network.nixpkgs` (a package set) evaluates the whole network when given, as in
# NixOps master's eval-machine-info.nix (`pkgs`, `evalConfig`); otherwise <nixpkgs> does.
#
# Secrets never pass through here: this Nix has no nix-plugins, so the network's own files are
# read with `scopedImport`, with a `builtins` whose `extraBuiltins.vault path field` (and the
# `exec`-based builtins of the user's extra-builtins file) return a *reference* string, which
# survives "${…}" interpolation and is resolved by pulumi-nixos at deploy time.
{ networkExprs                 # absolute paths of the network files
, args ? { }                   # `nixops set-args`
, rootAuthorizedKeys ? { }     # machine → public keys for root (NixOps's `none` physical spec)
, extraBuiltinsFile ? null     # nix-plugins' extra-builtins-file (called with { exec, … })
, keysModule                   # pulumi-nixos's keys.nix (units for the keys)
, system ? builtins.currentSystem
, uuid ? ""                    # nixops/deployment.py `eval`: --argstr uuid self.uuid
, deploymentName ? ""          # … --argstr deploymentName (self.name or "")
, stateVersions ? { }          # machine → the stateVersion NixOps recorded (ResourceAttrs)
, machineArgs ? { }            # machine → module arguments from the Pulumi program (specialArgs)
}:
let
  inherit (builtins) attrNames concatMap filter functionArgs isAttrs isFunction isPath isString listToAttrs mapAttrs removeAttrs;

  # NixOps master eval-machine-info.nix: `pkgs = (builtins.head (network.network)).nixpkgs or
  # (import <nixpkgs> { inherit system; })` and `evalConfig = import (pkgs.path + "/nixos/lib/eval-config.nix")`.
  networkPkgs = (builtins.head (network.network or [ { } ])).nixpkgs or null;
  networkNixpkgs =
    if networkPkgs == null then null
    else if isAttrs networkPkgs && networkPkgs ? path && networkPkgs ? lib then builtins.unsafeDiscardStringContext (toString networkPkgs.path)
    else throw "network.nixpkgs must be a nixpkgs package set (e.g. `network.nixpkgs = import ./nixpkgs { };`), as NixOps 2 uses it";

  ref = kind: value: "@@pulumi-nixos-ref${builtins.toJSON { inherit kind value; }}@@";
  # NIX_PATH's nixpkgs trees, read without failing when <nixpkgs> is absent (a network that brings
  # its own nixpkgs may be evaluated with an empty NIX_PATH).
  nixpkgsRoots = concatMap (e: if e.prefix == "nixpkgs" then [ e.path ] else if e.prefix == "" then [ (e.path + "/nixpkgs") ] else [ ]) builtins.nixPath;
  under = dir: p: let s = toString p; in builtins.substring 0 (builtins.stringLength dir + 1) s == dir + "/";
  # Inside a nixpkgs tree (an ancestor with nixos/lib/eval-config.nix): a checkout that
  # `network.nixpkgs = import ./nixpkgs { }` names, which cannot be known before the network is read.
  inNixpkgsTree = p: let d = dirOf (toString p); in
    d != "/" && (builtins.pathExists (d + "/nixos/lib/eval-config.nix") || inNixpkgsTree d);
  # nixpkgs (and anything in the store) is imported as usual; the user's files through the scope.
  external = p: under "/nix/store" p || builtins.any (r: under r p) nixpkgsRoots || inNixpkgsTree p;

  fakeExec = argv: ref "exec" (map toString argv);
  userExtra = if extraBuiltinsFile == null then { }
    else let f = scopedImport scope extraBuiltinsFile; in
      if isFunction f then f (builtins // { exec = fakeExec; importNative = _: _: throw "importNative is not available (pulumi-nixos evaluates without nix-plugins)"; }) else f;
  extraBuiltins = userExtra // {
    vault = path: field: ref "vault" { path = toString path; field = toString field; };
  };
  scope = {
    builtins = builtins // { inherit extraBuiltins; };
    import = p: if external p then builtins.import p else scopedImport scope p;
  };

  # Modules of the user's files, loaded through the scope (also those they import).
  loadModule = m:
    if (isPath m || (isString m && builtins.substring 0 1 m == "/")) && !(external m)
    then { _file = toString m; key = toString m; imports = [ (wrap (scope.import m)) ]; }
    else wrap m;
  wrap = m:
    if isFunction m then { __functor = _: a: wrapBody (m a); __functionArgs = functionArgs m; }
    else if isAttrs m && !(m ? __functor) then wrapBody m
    else m;
  wrapBody = b: if isAttrs b && b ? imports then b // { imports = map loadModule b.imports; } else b;

  call = x: if isFunction x then x args else x;
  getNetwork = f: (call (scope.import f)) // { _file = toString f; };
  closure = builtins.genericClosure {
    startSet = map (f: { key = toString f; }) networkExprs;
    operator = { key }: map (f: { key = toString f; }) ((getNetwork key).require or [ ]);
  };
  networks = map ({ key }: getNetwork key) closure;
  zipAttrs = sets: listToAttrs (map (n: { name = n; value = builtins.catAttrs n sets; }) (concatMap attrNames sets));
  network = zipAttrs networks;

  reserved = [ "network" "defaults" "resources" "require" "nixpkgs" "_file" ];
  machineNames = attrNames (removeAttrs network reserved);
  pkgs = if networkPkgs != null then networkPkgs else import <nixpkgs> { inherit system; };
  inherit (pkgs) lib;
  low = lib.mkOverride 900;
  defaults = map loadModule (network.defaults or [ ]);
  evalConfig = if networkNixpkgs != null then import (networkNixpkgs + "/nixos/lib/eval-config.nix") else import <nixpkgs/nixos/lib/eval-config.nix>;

  nodes = listToAttrs (map (name: {
    inherit name;
    value = evalConfig {
      inherit system;
      modules = [
        { key = "pulumi-nixos-nixops"; networking.hostName = low name; deployment = { name = deploymentName; arguments = args; inherit uuid; }; }
        ./deployment.nix
        keysModule
      ] ++ defaults
        ++ concatMap (n: if n ? ${name} then [ { _file = n._file; imports = [ (loadModule n.${name}) ]; } ] else [ ]) networks
        # As NixOps's `none` backend: the key it deployed with stays in root's authorized keys.
        ++ (if rootAuthorizedKeys ? ${name} then [ { key = "pulumi-nixos-physical"; users.users.root.openssh.authorizedKeys.keys = rootAuthorizedKeys.${name}; } ] else [ ])
        # NixOps's physical spec (nixops/deployment.py `get_physical_spec`, `do_machine`):
        # `system.stateVersion = lib.mkDefault (m.state_version or nixosRelease)`; without a
        # recorded version that is the release, which NixOS's own default already is.
        ++ (if stateVersions ? ${name} then [ { key = "pulumi-nixos-state-version"; system.stateVersion = lib.mkDefault stateVersions.${name}; } ] else [ ]);
      # The program's arguments beside NixOps's own (their names never shadow these: refused before).
      specialArgs = (machineArgs.${name} or { }) // { inherit nodes name resources uuid deploymentName; };
    };
  }) machineNames);

  resources = { machines = mapAttrs (n: v: v.config) nodes; sshKeyPairs = { }; commandOutput = { }; };

  # Every field is declared (keys.nix, deployment.nix), with NixOps's defaults.
  keyInfo = name: k: {
    inherit (k) name text keyCommand user group permissions;
    # keyFile: its path (keys.nix applies toString), never copied into the store.
    inherit (k) keyFile;
    destDir = toString k.destDir;
  };
  machineInfo = name: node: let d = node.config.deployment; in {
    inherit (d) targetEnv targetHost targetPort targetUser hasFastConnection alwaysActivate tags sshOptions storeKeysOnMachine encryptedLinksTo privilegeEscalationCommand;
    keys = mapAttrs keyInfo d.keys;
    # Every deployment.* name the machine has, so unsupported ones are named, not ignored.
    options = attrNames d;
  };
  networkAttrs = builtins.foldl' (a: b: a // b) { } (network.network or [ ]);
in {
  inherit nodes networkNixpkgs;
  info = {
    network = {
      description = networkAttrs.description or "";
      enableRollback = networkAttrs.enableRollback or true;
      attributes = attrNames (removeAttrs networkAttrs [ "nixpkgs" ]);
      # NixOps 2 (nixops/evaluation.py `eval_network`): one storage backend, at most one lock backend.
      storage = if isAttrs (networkAttrs.storage or { }) then attrNames (networkAttrs.storage or { }) else [ "(not an attribute set)" ];
      lock = if isAttrs (networkAttrs.lock or { }) then attrNames (networkAttrs.lock or { }) else [ "(not an attribute set)" ];
      nixpkgs = networkNixpkgs;
    };
    resources = concatMap (r: concatMap (t: map (n: "${t}.${n}") (attrNames r.${t})) (attrNames r)) (network.resources or [ ]);
    machines = mapAttrs machineInfo nodes;
  };
}
