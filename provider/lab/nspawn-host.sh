#!/bin/bash
# Supervisor of one systemd lab host (lab.ts starts it detached, one per host).
#   nspawn-host.sh HOSTDIR NAME NETNS CGROUP
# It moves itself into the host's own cgroup (so nspawn's payload/supervisor cgroups are the
# host's, and `lab down` finds every process of the host there), then runs the host as a
# systemd-nspawn container in the lab's netns, with the machine's /usr read-only and the host's
# own /nix, /etc, /root, /home, /boot and /var. PID 1 is /lab-stage2 (stage2.sh): the system profile's
# default generation's `init`, then systemd, as NixOS boots. nspawn exits 133 when the
# container asks to reboot: then the host boots again (that host only), unless HOSTDIR/stop exists.
set -u
H=$1 NAME=$2 NETNS=$3 CG=$4
for c in "/sys/fs/cgroup/systemd/$CG" "/sys/fs/cgroup/unified/$CG"; do
  [ -d "${c%/"$CG"}" ] || continue
  # Retried: another lab's `down` may remove the shared parent between the mkdir and the move.
  for _ in 1 2 3; do mkdir -p "$c" && echo $$ > "$c/cgroup.procs" && break; done 2>/dev/null
done
# A pure cgroup2 machine (no hybrid hierarchy): one cgroup there.
if [ ! -d /sys/fs/cgroup/unified ] && [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p "/sys/fs/cgroup/$CG" && echo $$ > "/sys/fs/cgroup/$CG/cgroup.procs"
fi
while :; do
  echo booting > "$H/state/power"
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$H/fs" --register=no --keep-unit \
    -M "$NETNS" --hostname="$NAME" --network-namespace-path="/run/netns/$NETNS" --console=read-only \
    --resolv-conf=off --timezone=off --link-journal=no --kill-signal=SIGRTMIN+3 \
    --bind-ro=/usr --bind="$H/nix:/nix" --bind="$H/etc:/etc" --bind="$H/root:/root" --bind="$H/boot:/boot" \
    --bind="$H/home:/home" --bind="$H/state:/run/lab" \
    /lab-stage2 </dev/null >>"$H/console.log" 2>&1 &
  echo $! > "$H/nspawn.pid"
  wait $!; rc=$?
  echo "$(date +%s.%N) nspawn exited $rc" >> "$H/boots.log"
  if [ $rc -eq 133 ] && [ ! -e "$H/stop" ]; then echo rebooting > "$H/state/power"; continue; fi
  break
done
echo off > "$H/state/power"
rm -f "$H/nspawn.pid"
