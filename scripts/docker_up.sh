#!/usr/bin/env bash
# Bring up a Docker engine on a machine without systemd (a CI runner, a container, a bare VM):
# installs Debian's docker.io (and debootstrap, for scripts/base_image.sh) when absent, then starts
# dockerd in the background with the overlay2 storage driver. Needs root. Does nothing when an engine
# already answers. MTU (default 1400) must not exceed the host interface's, or containers' downloads stall.
set -euo pipefail
MTU=${MTU:-1400}
if docker info >/dev/null 2>&1; then
  echo "docker engine is up"; exit 0
fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "installing docker.io and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
nohup dockerd --mtu="$MTU" --storage-driver=overlay2 >"$LOG" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker engine is up (log: $LOG)"; exit 0; fi
  sleep 1
done
echo "dockerd did not answer within 60 s; its log ($LOG) ends:" >&2
tail -n 20 "$LOG" >&2
exit 1
