#!/bin/bash
# PID 1 of one lab host. Runs inside the host's own network, mount and PID namespaces
# (started by lab.ts through `ip netns exec NS unshare --mount --pid --fork --mount-proc`).
# It gives the host its own /nix, /etc, /boot, /run, /run/keys, /root, /home and /tmp, emulates a
# boot id, intercepts reboot/poweroff, and supervises sshd. A real reboot(2) from inside a
# non-initial PID namespace only kills this process, so the machine itself cannot be rebooted.
set -eu
HOSTDIR=$1   # the host's state directory in the lab dir (outside the namespaces)
LABBIN=$2    # directory holding power.sh
mount --make-rprivate /
# Order matters: the lab dir may itself live under /tmp, which gets a private tmpfs last.
mount --bind "$LABBIN/power.sh" /usr/bin/systemctl
# reboot, poweroff, halt and shutdown are symlinks to systemctl on Debian: that one bind covers all.
mount --bind "$HOSTDIR/nix" /nix
mount --bind "$HOSTDIR/etc" /etc
mount --bind "$HOSTDIR/root" /root
mount --bind "$HOSTDIR/home" /home
# Its own /boot, for the boot loader's record (labs made before it have none: the machine's stays unwritten).
if [ -d "$HOSTDIR/boot" ]; then mount --bind "$HOSTDIR/boot" /boot; else mount -t tmpfs -o mode=0755 tmpfs /boot; fi
# Tools read the boot id from /proc/sys/kernel/random/boot_id: a file bound over it is the
# host's own boot id, renewed at every lab reboot.
mount --bind "$HOSTDIR/boot_id" /proc/sys/kernel/random/boot_id
mount -t tmpfs -o mode=0755 tmpfs /run
# The host's state dir stays reachable (for boot_id, power, logs) after /tmp is covered.
mkdir -m 0700 /run/lab
mount --bind "$HOSTDIR" /run/lab
HOSTDIR=/run/lab
mount -t tmpfs -o mode=1777 tmpfs /tmp

hostname "$(cat /etc/hostname)"

boot() {
  getent group keys >/dev/null || groupadd keys
  cat /proc/sys/kernel/random/uuid > "$HOSTDIR/boot_id"
  mkdir -p /run/keys /run/sshd
  # A ramfs, as on NixOS (keys.nix's activation script mounts one where /run/keys is not).
  mount -t ramfs -o mode=0750 ramfs /run/keys
  chgrp keys /run/keys 2>/dev/null || true
  # NixOS's setuid wrappers: sudo is /run/wrappers/bin/sudo, first on the login PATH.
  mkdir -p /run/wrappers/bin && ln -sfn /usr/bin/sudo /run/wrappers/bin/sudo
  # As at NixOS boot: the boot loader's default (switch-to-configuration's record), else the
  # system profile's default generation, becomes the current system.
  p=
  if [ -s /boot/nixos-default ]; then read -r p < /boot/nixos-default; fi
  if [ -z "$p" ] || [ ! -e "$p" ]; then p=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null || true); fi
  if [ -n "$p" ]; then ln -sfn "$p" /run/current-system; fi
  /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config 2>>"$HOSTDIR/sshd.log" &
  SSHD=$!
  echo up > "$HOSTDIR/power"
}

shutdown_all() {
  # From PID 1 of a PID namespace, kill -1 reaches every other process of this host only.
  kill -TERM -1 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -z "$(ls /proc | grep -E '^[0-9]+$' | grep -vx 1)" ] && break
    sleep 0.1
  done
  kill -KILL -1 2>/dev/null || true
  umount /run/keys 2>/dev/null || true
  rm -rf /run/keys /run/current-system /run/sshd /run/sshd.pid /run/sudo
}

REQUEST=
trap 'REQUEST=reboot' USR1
trap 'REQUEST=poweroff' USR2
trap 'REQUEST=poweroff' TERM
boot
while true; do
  wait || true
  case "$REQUEST" in
    reboot)
      REQUEST=
      echo rebooting > "$HOSTDIR/power"
      shutdown_all
      sleep 0.5
      boot ;;
    poweroff)
      echo off > "$HOSTDIR/power"
      shutdown_all
      exit 0 ;;
    *)
      # sshd died on its own (or wait returned for a reaped orphan): keep the host reachable.
      if ! kill -0 "$SSHD" 2>/dev/null; then
        /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config 2>>"$HOSTDIR/sshd.log" &
        SSHD=$!
        sleep 0.2
      fi ;;
  esac
done
