#!/usr/bin/env bash
# Builds the sandbox test image `backspace-sandbox:test` without any image registry:
# a Debian bookworm minbase root file system from debootstrap, with the same tools as
# sandbox/Dockerfile (minus build-essential and Node.js, to stay small and fast), loaded
# with `docker import`. Reuses the image when it already exists (FORCE=1 rebuilds).
set -euo pipefail

IMAGE="${BACKSPACE_TEST_IMAGE:-backspace-sandbox:test}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="bookworm"
PACKAGES="bash,git,ripgrep,python3,procps,coreutils,ca-certificates,curl,iproute2,findutils,diffutils,patch,less"

die() { echo "build-test-image: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null || die "the Docker engine does not answer (DOCKER_HOST=${DOCKER_HOST:-unset})"

if [[ "${FORCE:-0}" != "1" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-test-image: $IMAGE already present, reusing it"
    exit 0
fi

[[ "$(id -u)" == "0" ]] || die "debootstrap needs root"

if ! command -v debootstrap >/dev/null; then
    echo "build-test-image: installing debootstrap"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || die "could not install debootstrap"
fi

ROOT="$(mktemp -d /tmp/backspace-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT

echo "build-test-image: debootstrap $SUITE into $ROOT (minbase)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 \
    || { tail -n 40 "$ROOT.log" >&2; rm -f "$ROOT.log"; die "debootstrap failed"; }
rm -f "$ROOT.log"

# The non-root user the agent runs as, and its working directory.
chroot "$ROOT" /usr/sbin/groupadd --gid 1000 agent
chroot "$ROOT" /usr/sbin/useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash agent
mkdir -p "$ROOT/workspace"
chown 1000:1000 "$ROOT/workspace"
chmod 0755 "$ROOT/workspace"

# Small image: no apt lists or caches, no docs, no locales beyond C.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
    "$ROOT"/usr/share/locale/* "$ROOT"/var/log/*.log "$ROOT"/tmp/* 2>/dev/null || true

# The sandbox runs with an empty environment: the image provides PATH and HOME.
echo "build-test-image: importing as $IMAGE"
tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change 'USER agent' \
    --change 'WORKDIR /workspace' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/home/agent' \
    --change 'LABEL org.opencontainers.image.title=backspace-sandbox-test' \
    --change 'CMD ["sleep", "infinity"]' \
    - "$IMAGE" >/dev/null || die "docker import failed"

docker image inspect "$IMAGE" --format 'build-test-image: built {{.Id}} ({{.Size}} bytes)'
