#!/bin/sh
# PID 1 of a systemd lab host, first step (copied to the host's root as /lab-stage2).
# As NixOS boots: the boot loader's default entry — the record switch-to-configuration's boot
# loader step writes (/boot/nixos-default), else the system profile's default generation — and
# its `init` (a stand-in NixOS's stage 2: activate, then exec systemd). A profile without one
# (not a NixOS system) gets what stage 2 would have done: an empty /run/keys, /run/current-system
# = the profile; then systemd.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# NixOS's setuid wrappers (security.wrappers): sudo is /run/wrappers/bin/sudo, first on the login PATH.
mkdir -p /run/wrappers/bin && ln -sfn /usr/bin/sudo /run/wrappers/bin/sudo
p=
if [ -s /boot/nixos-default ]; then read -r p < /boot/nixos-default; fi
if [ -z "$p" ] || [ ! -x "$p/init" ]; then p=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null); fi
if [ -n "$p" ] && [ -x "$p/init" ]; then exec "$p/init" "$@"; fi
mkdir -p /run/keys
mount -t ramfs -o mode=0750,nosuid,nodev ramfs /run/keys 2>/dev/null || mount -t tmpfs -o mode=0750,nosuid,nodev tmpfs /run/keys
chgrp keys /run/keys 2>/dev/null || true
[ -n "$p" ] && ln -sfn "$p" /run/current-system
exec /lib/systemd/systemd "$@"
