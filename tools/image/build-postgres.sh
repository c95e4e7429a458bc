#!/usr/bin/env bash
# Build `postgres:15-bookworm` offline: Debian bookworm + postgresql-15 (mmdebstrap, docker import), then
# tools/image/postgres/Dockerfile gives it the official image's contract. The chart's bundled PostgreSQL,
# the compose file and the e2e suite use it where no registry can provide the official image.
#   tools/image/build-postgres.sh [TAG]      default TAG: postgres:15-bookworm
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AIRSIDE_CACHE="${AIRSIDE_CACHE:-/var/cache/airside}"
CACHE="$AIRSIDE_CACHE/image"
MIRROR="${AIRSIDE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${AIRSIDE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
PKGS="postgresql-15 util-linux ca-certificates"
TAG="${1:-postgres:15-bookworm}"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no docker engine: run tools/docker/dockerd-up.sh"
recipe="$(cat "$HERE/postgres/Dockerfile" "$HERE/postgres/entrypoint.sh" | sha256sum | cut -c1-10)"
if [[ "$(docker image inspect -f '{{ index .Config.Labels "airside.recipe" }}' "$TAG" 2>/dev/null)" == "$recipe" ]]; then
  log "$TAG: cached"; exit 0
fi
hash="$(printf '%s\n' "$SUITE" "$PKGS" "$MIRROR" | sha256sum | cut -c1-10)"
BASE="airside/postgres-base:$SUITE-$hash"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || die "needs mmdebstrap (apt-get install -y mmdebstrap)"
  mkdir -p "$CACHE"
  tar="$CACHE/postgres-base-$SUITE-$hash.tar"
  if [[ ! -s "$tar" ]]; then
    log "mmdebstrap $SUITE ($PKGS)"
    mmdebstrap --quiet --format=tar --variant=minbase --include="${PKGS// /,}" --aptopt='Acquire::Retries "3"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$SUITE" "$tar.tmp" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
      "deb $SECURITY_MIRROR $SUITE-security main" || { rm -f "$tar.tmp"; die "mmdebstrap failed"; }
    mv "$tar.tmp" "$tar"
  fi
  docker import "$tar" "$BASE" >/dev/null
  log "imported $BASE"
fi
log "docker build $TAG (FROM $BASE)"
docker build --quiet --network none --label "airside.recipe=$recipe" --build-arg "BASE=$BASE" -t "$TAG" \
  "$HERE/postgres" >/dev/null || die "docker build of $TAG failed"
log "built $TAG"
