#!/usr/bin/env bash
# Fill the BOSH release's blobs: wheels of airside and every dependency (built on this host with
# `pip wheel`, CPython 3.11 like the release's python3 package) and, when given, the CPython source.
#
#   tools/bosh/vendor-blobs.sh [DIR]      default: bosh/src (where `bosh create-release` finds package files
#   that are not registered blobs; `bosh add-blob` them for a final release)
# Env: PYTHON (default python3, must be 3.11), PYTHON_SRC (a Python-3.11.*.tgz from python.org),
#      AIRSIDE_CACHE (pip cache under it; default /var/cache/airside).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BLOBS="${1:-$ROOT/bosh/src}"
PYTHON="${PYTHON:-python3}"
CACHE="${AIRSIDE_CACHE:-/var/cache/airside}/image/pip"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

py="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[[ "$py" == 3.11 ]] || die "$PYTHON is $py; the release's python3 package is 3.11 (set PYTHON=python3.11)"

rm -rf "$BLOBS/airside"
mkdir -p "$BLOBS/airside" "$CACHE"
log "pip wheel airside and its dependencies into $BLOBS/airside"
"$PYTHON" -m pip wheel --quiet --cache-dir "$CACHE" --wheel-dir "$BLOBS/airside" "$ROOT" || die "pip wheel failed"
log "$(find "$BLOBS/airside" -name '*.whl' | wc -l) wheels, $(du -sh "$BLOBS/airside" | cut -f1)"

if [[ -n "${PYTHON_SRC:-}" ]]; then
  [[ "$(basename "$PYTHON_SRC")" == Python-3.11.*.tgz ]] || die "PYTHON_SRC must be a Python-3.11.*.tgz"
  mkdir -p "$BLOBS/python3"
  cp "$PYTHON_SRC" "$BLOBS/python3/"
  log "python3 source: $(basename "$PYTHON_SRC")"
else
  log "no PYTHON_SRC: put a Python-3.11.*.tgz (python.org) in $BLOBS/python3/ before bosh create-release"
fi
