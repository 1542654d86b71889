#!/bin/sh
# What the lab and the tests need from the system, and the npm dependencies, installed when
# missing: `npm run demo`, `npm test` and .ci/run call this first, so the README's commands work on
# a fresh clone on a fresh Debian with only Node 20 (as root: the lab needs root anyway). Quiet and
# quick when nothing is missing.
set -eu
PKGS="nix-bin openssh-server openssh-client iproute2 sudo xz-utils zstd systemd-container inotify-tools nftables"
# System packages: returns when all are there (or were installed), exits 1 naming what is missing.
system_packages() {
  if [ "$(uname -s)" != Linux ]; then
    echo "pulumi-nixos setup: the lab needs Linux (network and mount namespaces)" >&2
    exit 1
  fi
  missing=""
  if ! command -v dpkg >/dev/null 2>&1; then
    # Not Debian: check the commands these packages provide and say what is missing.
    for c in nix-store ssh ssh-keygen ip sudo xz zstd systemd-nspawn inotifywait nft; do
      command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
    done
    [ -z "$missing" ] && return 0
    echo "pulumi-nixos setup: missing commands:$missing (install them with your package manager; Debian packages: $PKGS)" >&2
    exit 1
  fi
  for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "pulumi-nixos setup: missing packages:$missing; run as root (the lab needs root), or: sudo apt-get install$missing" >&2
    exit 1
  fi
  echo "pulumi-nixos setup: installing$missing (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing >/dev/null
  echo "pulumi-nixos setup: installed$missing"
}

system_packages
# npm ci when node_modules is missing or not the lockfile's (scripts/npm-deps.js).
node "$(dirname "$0")/npm-deps.js"
