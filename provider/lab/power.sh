#!/bin/sh
# Bound over /usr/bin/systemctl inside a lab host (reboot, poweroff, halt and shutdown link to it).
# It asks the host's PID 1 (host-init.sh) to reboot or power off this host only.
verb=$(basename "$0")
[ "$verb" = systemctl ] && verb=${1:-}
case "$verb" in
  # Like systemd, the request returns at once and the host goes down a moment later.
  reboot) echo "lab host: rebooting"; (sleep 0.3; kill -USR1 1) >/dev/null 2>&1 & ;;
  poweroff|halt|shutdown) echo "lab host: powering off"; (sleep 0.3; kill -USR2 1) >/dev/null 2>&1 & ;;
  *) echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2; exit 1 ;;
esac
