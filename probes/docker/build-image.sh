#!/usr/bin/env bash
# Build the netprobe image with podman, from a Debian bookworm base built here when no registry
# serves one, and check that it starts: non-root, HEALTHCHECK passing.
#
#   sudo probes/docker/build-image.sh                 # linux/amd64
#   sudo probes/docker/build-image.sh arm64           # or armhf (linux/arm/v7), under qemu
#   BASE_IMAGE=debian:bookworm-slim probes/docker/build-image.sh   # a registry's base instead
#
# Prints the seconds each step took and the size of the image's own layers (what it adds to its
# base). podman runs with --storage-driver vfs, --runtime runc and a containers.conf without
# default ulimits (what works on this kind of host: crun refuses a hybrid cgroup layout), in a
# storage of its own under WORKDIR (default /var/tmp/netprobe-image), so it never touches other
# podman users' images. When pip's TLS goes through a local CA (CA_BUNDLE, default the system
# bundle), that bundle is mounted into the build and pip pointed at it.
set -euo pipefail

arch="${1:-amd64}"
work="${NETPROBE_IMAGE_WORK:-/var/tmp/netprobe-image}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
case "$arch" in
    amd64) platform="linux/amd64" ;;
    arm64) platform="linux/arm64" ;;
    armhf) platform="linux/arm/v7" ;;
    *) echo "build-image.sh: ARCH must be amd64, arm64 or armhf, not $arch" >&2; exit 2 ;;
esac
tag="localhost/netprobe:0.1.0-$arch"

log() { echo "build-image[$arch]: $*"; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }

mkdir -p "$work"
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
pod() {
    CONTAINERS_CONF="$work/containers.conf" podman --root "$work/storage" \
        --runroot "$work/run" --storage-driver vfs --runtime runc "$@"
}

if [ "$arch" != amd64 ]; then
    qemu="qemu-arm"
    [ "$arch" = arm64 ] && qemu="qemu-aarch64"
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e "/proc/sys/fs/binfmt_misc/$qemu" ] || update-binfmts --enable "$qemu"
fi

# 1. the base: a registry's, or a slim bookworm root filesystem made with mmdebstrap
base="${BASE_IMAGE:-localhost/netprobe-base:bookworm-$arch}"
if [ -z "${BASE_IMAGE:-}" ] && ! pod image exists "$base"; then
    started=$(date +%s)
    if [ ! -s "$work/base-$arch.tar" ]; then
        log "building the bookworm base with mmdebstrap"
        # as debian:bookworm-slim: no manuals, documentation or translations, no apt lists
        # shellcheck disable=SC2016  # "$1" is the hook's own argument, expanded by mmdebstrap
        mmdebstrap --arch="$arch" --variant=minbase \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
            --aptopt='APT::Install-Recommends "false"' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            bookworm "$work/base-$arch.tar.part" "deb $mirror bookworm main"
        mv "$work/base-$arch.tar.part" "$work/base-$arch.tar"
    fi
    pod import --arch "${platform#linux/}" "$work/base-$arch.tar" "$base" >/dev/null
    rm -f "$work/base-$arch.tar"
    log "base built and imported in $(elapsed "$started")"
fi

# 2. the image (--format docker keeps the HEALTHCHECK; OCI images have no such field)
started=$(date +%s)
pod build --format docker --platform "$platform" --network host \
    --build-arg BASE_IMAGE="$base" \
    --volume "$ca_bundle:/run/build-ca.crt:ro" \
    --build-arg PIP_CERT=/run/build-ca.crt --build-arg SSL_CERT_FILE=/run/build-ca.crt \
    --build-arg REQUESTS_CA_BUNDLE=/run/build-ca.crt \
    --tag "$tag" "$checkout"
log "image built in $(elapsed "$started")"

# 3. its own layers: the image's size less its base's
image_bytes="$(pod image inspect --format '{{.Size}}' "$tag")"
base_bytes="$(pod image inspect --format '{{.Size}}' "$base")"
log "image $((image_bytes / 1000000)) MB on a $((base_bytes / 1000000)) MB base: own layers $(((image_bytes - base_bytes) / 1000000)) MB"

# 4. it starts: the image's own demo configuration, no network but its loopback
started=$(date +%s)
name="netprobe-smoke-$$"
pod run -d --name "$name" --network none --cap-drop all --cap-add NET_RAW "$tag" >/dev/null
trap 'pod rm -f "$name" >/dev/null 2>&1 || true' EXIT
uid="$(pod exec "$name" id -u)"
[ "$uid" != 0 ] || { log "the agent runs as root"; exit 1; }
for _ in $(seq 1 120); do
    if pod healthcheck run "$name" >/dev/null 2>&1; then
        log "running as uid $uid, HEALTHCHECK passing $(elapsed "$started") after the start"
        pod exec "$name" netprobe version
        exit 0
    fi
    sleep 1
done
log "HEALTHCHECK never passed"
pod logs "$name" | tail -20
exit 1
