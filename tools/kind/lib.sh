# shellcheck shell=bash
# Shared helpers for the offline kind toolchain. Source, don't execute.
set -euo pipefail

KIND_TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$KIND_TOOLS_DIR/versions.env"

AIRSIDE_CACHE="${AIRSIDE_CACHE:-/var/cache/airside}"
KIND_CACHE="$AIRSIDE_CACHE/kind"
mkdir -p "$KIND_CACHE"

# Keep Go's module and build caches inside the airside cache so that a warm
# cache dir is self-contained (CI can persist just this one directory).
export GOMODCACHE="${AIRSIDE_GOMODCACHE:-$AIRSIDE_CACHE/go/mod}"
export GOCACHE="${AIRSIDE_GOCACHE:-$AIRSIDE_CACHE/go/build}"
export GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN="$AIRSIDE_GOTOOLCHAIN"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
# Two cores are shared with other work: never run more than 2 compile jobs.
# shellcheck disable=SC2034  # used by the build scripts that source this file
GO_BUILD_P="${AIRSIDE_GO_BUILD_P:-2}"

_step_total="${_step_total:-0}"
_step_n=0
# step "what" : numbered progress line, e.g. "==> [3/9] building kube binaries"
step() {
  _step_n=$((_step_n + 1))
  printf '==> [%d/%d] %s\n' "$_step_n" "$_step_total" "$*" >&2
}
info() { printf '    %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# need CMD "what it is / how to get it": fail with a clear message
need() {
  command -v "$1" >/dev/null 2>&1 || die "missing '$1' ($2)"
}

# timed LABEL CMD...: run and report duration
timed() {
  local label="$1"; shift
  local t0=$SECONDS
  "$@"
  info "$label done in $((SECONDS - t0))s"
}

# stamp helpers: an artifact directory is complete only when it has .done
is_done() { [[ -f "$1/.done" ]]; }
mark_done() { date -u +%FT%TZ > "$1/.done"; }

# docker image present?
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

docker_ok() {
  docker info >/dev/null 2>&1
}
require_docker() {
  docker_ok || die "docker engine is not usable (run: bash tools/docker/dockerd-up.sh)"
}

# Recipe key: changes when a pinned version or an image recipe changes, so
# cached images built from an older recipe are never reused by mistake.
# AIRSIDE_RECIPE_SALT forces a rebuild of every image (e.g. to time a cold build).
recipe_key() {
  { cd "$KIND_TOOLS_DIR" && cat versions.env build-rootfs.sh build-images.sh images/*; echo "${AIRSIDE_RECIPE_SALT:-}"; } \
    | sha256sum | cut -c1-10
}
kind_bin() { echo "$KIND_CACHE/kind-$KIND_VERSION/bin/kind"; }
kube_bin_dir() { echo "$KIND_CACHE/kube-$K8S_VERSION/bin"; }
node_image_name() { echo "kindest/node:$K8S_VERSION-airside-$(recipe_key)"; }
base_image_name() { echo "kindest/base:airside-$(recipe_key)"; }
# module directory of a Go module version in the module cache (downloads it)
mod_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
}

# docker build, quiet: the legacy builder's deprecation banner and build output
# are shown only when the build fails.
docker_build() {
  local log rc=0
  log="$(mktemp)"
  DOCKER_BUILDKIT=0 docker build -q "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then grep -v -e DEPRECATED -e buildx -e 'docs.docker.com/go/buildx' "$log" >&2; fi
  rm -f "$log"
  return $rc
}

# ensure_pkgs PKG...: install missing Debian packages (root + apt-get), or fail naming them
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    info "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  else
    die "missing Debian packages: ${missing[*]} (apt-get install them as root)"
  fi
}
