#!/usr/bin/env bash
# Build the Debian base image locally, for machines whose Docker engine has no registry to pull from.
#
#   sandbox-image/base-image.sh [TAG]      (default: debian:bookworm-slim)
#
# It runs `debootstrap --variant=minbase bookworm` into a temporary directory and `docker import`s it under
# TAG, so the Dockerfiles' default `FROM debian:bookworm-slim` builds unchanged. When TAG is already
# present it does nothing: the image is built once per machine and reused. Needs root (debootstrap) and
# Debian's mirror; MINT_DEBIAN_MIRROR changes the mirror.
set -euo pipefail
tag="${1:-debian:bookworm-slim}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag: present, reused"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror="${MINT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root=$(mktemp -d /tmp/mint-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base image $tag: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 40 "$root.log"
    echo "debootstrap failed: see above (is $mirror reachable? set MINT_DEBIAN_MIRROR)" >&2
    exit 1
}
rm -f "$root.log"
# What the official slim image also leaves out: apt lists and caches, docs and man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$tag" >/dev/null
echo "base image $tag: imported ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
