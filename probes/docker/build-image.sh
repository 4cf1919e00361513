#!/usr/bin/env bash
# Build the netprobe image with podman, from a Debian bookworm base built here when no registry
# serves one, and check that it starts: non-root, HEALTHCHECK passing.
#
#   sudo probes/docker/build-image.sh                 # linux/amd64
#   sudo probes/docker/build-image.sh arm64           # or armhf (linux/arm/v7), under qemu
#   BASE_IMAGE=debian:bookworm-slim probes/docker/build-image.sh   # a registry's base instead
#
# Prints the seconds each step took, the size of the image's own layers (what it adds to its
# base), `netprobe version` and the machine it ran on, and last "image id ID". podman runs with
# --storage-driver vfs, --runtime runc and a containers.conf without default ulimits (what works
# on this kind of host: crun refuses a hybrid cgroup layout), in a storage of its own under
# NETPROBE_IMAGE_WORK (default /var/tmp/netprobe-image): it never sees, let alone removes, other
# podman users' images or containers. In that storage it keeps the base, tagged by a hash of the
# mmdebstrap command that made it (a later run with the same inputs reuses it), and the build's
# layer cache; it removes only its own leftovers (see below). One build at a time per storage
# (a lock). A failure that looks like the network's (mirror or PyPI) is retried once. When pip's
# TLS goes through a local CA (CA_BUNDLE, default the system bundle), that bundle is mounted into
# the build. docs/fleet.md has the times and sizes.
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
    *) echo "build-image.sh: the architecture must be amd64, arm64 or armhf, not $arch" >&2; exit 2 ;;
esac
tag="localhost/netprobe:0.1.0-$arch"

log() { echo "build-image[$arch]: $*"; }
fail() { echo "build-image[$arch]: $*" >&2; exit 1; }
elapsed() { echo "$(($(date +%s) - $1)) s"; }
trap 'fail "failed at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || fail "needs root (podman with its own storage, mmdebstrap)"
for tool in podman runc flock; do
    command -v "$tool" >/dev/null || fail "needs $tool (apt-get install podman runc util-linux)"
done
[ -n "${BASE_IMAGE:-}" ] || command -v mmdebstrap >/dev/null ||
    fail "needs mmdebstrap to build the base (apt-get install mmdebstrap), or BASE_IMAGE"
[ -r "$ca_bundle" ] || fail "no CA bundle at $ca_bundle (set CA_BUNDLE)"

mkdir -p "$work"
exec 9>"$work/lock"
flock 9 # another build in this storage finishes first
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
pod() {
    CONTAINERS_CONF="$work/containers.conf" podman --root "$work/storage" \
        --runroot "$work/run" --storage-driver vfs --runtime runc "$@"
}

# Containers this script or tests/test_image.py started (named after their process id) whose
# process is gone, killed before it could remove them: they would keep their image and, when
# running, an agent alive. And the working containers of a killed build (podman lists them as
# "Storage"): with the lock held, no build of this storage is running.
pod ps --all --external --format '{{.Names}} {{.Status}}' | while read -r left status; do
    case "$left" in
        netprobe-smoke-* | netprobe-image-test-*)
            kill -0 "${left##*-}" 2>/dev/null || pod rm --force "$left" >/dev/null 2>&1 || true ;;
        *) [ "$status" != Storage ] || pod rm --force "$left" >/dev/null 2>&1 || true ;;
    esac
done

# A command that failed on what looks like the network (mirror mid-sync, a reset, a timeout, an
# HTTP 5xx) runs once more; any other failure stops here with its last lines.
transient='Temporary failure|Could not resolve|Connection (reset|refused|timed out)|timed out|Read ?timed ?out|Hash Sum mismatch|File has unexpected size|Failed to fetch|50[0-9] |Remote end closed|IncompleteRead|ProtocolError|No route to host|Network is unreachable'
retry_once() {
    local what="$1" output="$work/last-$arch.log"
    shift
    if "$@" 2>&1 | tee "$output"; then return 0; fi
    if grep -Eq "$transient" "$output"; then
        log "$what failed on what looks like a network error; retrying once in 30 s"
        sleep 30
        "$@" 2>&1 | tee "$output" && return 0
    fi
    fail "$what failed (full output above and in $output); last lines:
$(tail -15 "$output")"
}

if [ "$arch" != amd64 ]; then
    qemu="qemu-arm"
    [ "$arch" = arm64 ] && qemu="qemu-aarch64"
    command -v "$qemu-static" >/dev/null || fail "needs $qemu-static (apt-get install qemu-user-static)"
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e "/proc/sys/fs/binfmt_misc/$qemu" ] || update-binfmts --enable "$qemu"
fi

# 1. the base: a registry's, or a slim bookworm root filesystem made with mmdebstrap, kept in
# the storage under a tag naming the hash of the very command that made it
# shellcheck disable=SC2016  # "$1" is the hook's own argument, expanded by mmdebstrap
# (merged /usr set up by mmdebstrap's hook, not by the usrmerge package: that pulls in perl, 46 MB)
bootstrap=(mmdebstrap --arch="$arch" --variant=minbase
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --aptopt='APT::Install-Recommends "false"'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
    bookworm "deb $mirror bookworm main")
key="$(printf '%s\n' "${bootstrap[@]}" | sha256sum | cut -c1-12)"
base="${BASE_IMAGE:-localhost/netprobe-base:bookworm-$arch-$key}"
if [ -z "${BASE_IMAGE:-}" ] && pod image exists "$base"; then
    log "base $base already built (same mmdebstrap inputs): reused"
elif [ -z "${BASE_IMAGE:-}" ]; then
    started=$(date +%s)
    log "building the bookworm base with mmdebstrap (as debian:bookworm-slim: no manuals,"
    log "documentation or translations, no apt lists)"
    rm -f "$work/base-$arch.tar"
    # the last word is the mirror: mmdebstrap wants the output file before it
    retry_once "mmdebstrap" "${bootstrap[@]:0:${#bootstrap[@]}-1}" "$work/base-$arch.tar" \
        "${bootstrap[-1]}"
    pod import --arch "${platform#linux/}" "$work/base-$arch.tar" "$base" >/dev/null
    rm -f "$work/base-$arch.tar"
    log "base built and imported in $(elapsed "$started")"
    # this script's bases for the same architecture from other inputs are of no more use
    for old in $(pod images --format '{{.Repository}}:{{.Tag}}' localhost/netprobe-base); do
        case "$old" in
            "$base") ;;
            localhost/netprobe-base:bookworm-"$arch" | localhost/netprobe-base:bookworm-"$arch"-*)
                pod rmi "$old" >/dev/null 2>&1 || true ;;
        esac
    done
fi

# 2. the image (--format docker keeps the HEALTHCHECK; OCI images have no such field).
# Images of earlier builds that no tag names any more (this storage holds only this script's)
# are removed first, which also drops the wheels stage's cached layers: podman 4.3's builder
# mounts nothing into `RUN --mount=from=wheels` when that stage came whole from its cache.
# What goes into the wheels, hashed, is passed to the venv step for the opposite reason: that
# builder keys a cached RUN without looking into its bind mount.
source_digest="$(cd "$checkout" && find pyproject.toml README.md netprobe probes/docker -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum)"
pod image prune --force >/dev/null
started=$(date +%s)
retry_once "podman build" pod build --format docker --platform "$platform" --network host \
    --build-arg BASE_IMAGE="$base" --build-arg SOURCE_DIGEST="${source_digest%% *}" \
    --volume "$ca_bundle:/run/build-ca.crt:ro" \
    --build-arg PIP_CERT=/run/build-ca.crt --build-arg SSL_CERT_FILE=/run/build-ca.crt \
    --build-arg REQUESTS_CA_BUNDLE=/run/build-ca.crt \
    --tag "$tag" "$checkout"
log "image built in $(elapsed "$started")"
pod image prune --force >/dev/null

# 3. its own layers: the image's size less its base's
image_bytes="$(pod image inspect --format '{{.Size}}' "$tag")"
base_bytes="$(pod image inspect --format '{{.Size}}' "$base")"
log "image $((image_bytes / 1000000)) MB on a $((base_bytes / 1000000)) MB base: own layers $(((image_bytes - base_bytes) / 1000000)) MB"

# 4. it starts: the image's own demo configuration, no network but its loopback
started=$(date +%s)
name="netprobe-smoke-$$"
trap 'pod rm -f "$name" >/dev/null 2>&1 || true' EXIT
pod run -d --name "$name" --network none --cap-drop all --cap-add NET_RAW "$tag" >/dev/null
uid="$(pod exec "$name" id -u)"
[ "$uid" != 0 ] || fail "the agent runs as root"
for _ in $(seq 1 240); do
    if pod healthcheck run "$name" >/dev/null 2>&1; then
        log "running as uid $uid, HEALTHCHECK passing $(elapsed "$started") after the start"
        log "netprobe version: $(pod exec "$name" netprobe version), machine $(pod exec "$name" uname -m)"
        log "image id $(pod image inspect --format "{{.Id}}" "$tag")"
        exit 0
    fi
    sleep 1
done
pod logs "$name" 2>&1 | tail -20
fail "the HEALTHCHECK never passed in 240 s (the agent's last log lines above)"
