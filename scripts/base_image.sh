#!/usr/bin/env bash
# Make a Debian base image with Python 3.11 locally, for sites that cannot pull from a registry.
#   scripts/base_image.sh [TAG] [MIRROR]
# debootstrap (minbase variant) fetches bookworm's packages from MIRROR (default: the Debian mirror this
# machine's apt uses), then `docker import` turns the tree into an image. Needs root, debootstrap, docker.
set -euo pipefail
TAG=${1:-lumbar-base:bookworm}
MIRROR=${2:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
ROOTFS=$(mktemp -d /tmp/lumbar-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -n 20 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
# What an image does not need: apt's lists and caches, documentation, locales other than C.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$TAG"
echo "base image $TAG: $(docker image inspect -f '{{.Size}}' "$TAG") bytes"
