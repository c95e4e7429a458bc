#!/usr/bin/env bash
# Build the airside image offline-style, with no container registry:
#   1. a Debian bookworm rootfs (mmdebstrap, minbase + python3, venv, tini, runc, btrfs-progs),
#      `docker import`ed as airside/base:bookworm (cached by package list);
#   2. wheels of airside and every dependency, built on the host with `pip wheel` (the host has PyPI
#      access and the same CPython minor version as bookworm: 3.11);
#   3. `docker build` of docker/Dockerfile with those wheels (installed with --no-index).
#
#   tools/image/build.sh [TAG]        default TAG: airside:<version>
# Env: AIRSIDE_CACHE (default /var/cache/airside), AIRSIDE_DEBIAN_MIRROR, PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AIRSIDE_CACHE="${AIRSIDE_CACHE:-/var/cache/airside}"
CACHE="$AIRSIDE_CACHE/image"
MIRROR="${AIRSIDE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${AIRSIDE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PYTHON="${PYTHON:-python3}"
SUITE=bookworm
BASE_PKGS="python3 python3-venv tini ca-certificates runc btrfs-progs procps busybox-static containernetworking-plugins iptables"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

version="$(cd "$ROOT" && "$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
TAG="${1:-airside:$version}"

docker info >/dev/null 2>&1 || die "no docker engine: run tools/docker/dockerd-up.sh"
host_py="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[[ "$host_py" == 3.11 ]] || die "host $PYTHON is $host_py; wheels must match bookworm's python3.11 (set PYTHON=python3.11)"

# 1. base image ------------------------------------------------------------------------------------
hash="$(printf '%s\n' "$SUITE" "$BASE_PKGS" "$MIRROR" | sha256sum | cut -c1-10)"
BASE="airside/base:$SUITE-$hash"
if docker image inspect "$BASE" >/dev/null 2>&1; then
  log "base $BASE: cached"
else
  command -v mmdebstrap >/dev/null || die "needs mmdebstrap (apt-get install -y mmdebstrap)"
  mkdir -p "$CACHE"
  tar="$CACHE/base-$SUITE-$hash.tar"
  if [[ ! -s "$tar" ]]; then
    log "mmdebstrap $SUITE ($BASE_PKGS)"
    mmdebstrap --quiet --format=tar --variant=minbase --include="${BASE_PKGS// /,}" \
      --aptopt='Acquire::Retries "3"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      "$SUITE" "$tar.tmp" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
      "deb $SECURITY_MIRROR $SUITE-security main" || { rm -f "$tar.tmp"; die "mmdebstrap failed"; }
    mv "$tar.tmp" "$tar"
  fi
  docker import "$tar" "$BASE" >/dev/null
  log "imported $BASE"
fi
docker tag "$BASE" "airside/base:$SUITE"

# 2. wheels ----------------------------------------------------------------------------------------
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/wheels" "$CACHE/pip"
log "pip wheel airside and its dependencies (host, python $host_py)"
"$PYTHON" -m pip wheel --quiet --cache-dir "$CACHE/pip" --wheel-dir "$ctx/wheels" "$ROOT" \
  || die "pip wheel failed"
cp "$ROOT/docker/Dockerfile" "$ROOT/docker/.dockerignore" "$ctx/"

# 3. image -----------------------------------------------------------------------------------------
log "docker build $TAG (FROM $BASE, no network needed)"
docker build --quiet --network none --build-arg "BASE=$BASE" -t "$TAG" "$ctx" >/dev/null || die "docker build failed"
docker run --rm --network none "$TAG" --version
# every rebuild leaves the previous image untagged: drop those so the cache dir does not grow without bound
docker image prune -f >/dev/null || true
log "built $TAG"
