#!/usr/bin/env bash
# Build airside's bundled resource types in the layout Concourse workers use for theirs:
#   OUT_DIR/<type>/rootfs/                 a root filesystem with /opt/resource/{check,in,out}
#   OUT_DIR/<type>/resource_metadata.json  {"type", "version", "privileged", "unique_version_history"}
# Each type is one static Go binary (stdlib only, CGO_ENABLED=0; no module download) reached through
# the names check, in and out (symlinks). mock and time sit on busybox-static (the host's /bin/busybox);
# git on a Debian bookworm minbase rootfs with the packages in git/rootfs.packages (mmdebstrap, its tar
# cached under AIRSIDE_CACHE/resources keyed by suite, package list and mirror).
# A type is rebuilt only when its recipe changes: the hash of this script, go.mod, resource/, the
# type's directory, the Go version and its base (busybox binary / Debian package list) is kept in
# OUT_DIR/<type>/.recipe. A new build is made beside the old one and swapped in by rename.
#
#   tools/resources/build.sh [OUT_DIR]      default OUT_DIR: $AIRSIDE_CACHE/resource-types
# Env: AIRSIDE_CACHE (default /var/cache/airside), AIRSIDE_DEBIAN_MIRROR, AIRSIDE_DEBIAN_SECURITY_MIRROR,
#      AIRSIDE_RESOURCE_TYPES (space-separated subset to build; default: all), GO (default: go on PATH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AIRSIDE_CACHE="${AIRSIDE_CACHE:-/var/cache/airside}"
OUT="${1:-$AIRSIDE_CACHE/resource-types}"
CACHE="$AIRSIDE_CACHE/resources"
MIRROR="${AIRSIDE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${AIRSIDE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SUITE=bookworm
ALL_TYPES="mock time git"
TYPES="${AIRSIDE_RESOURCE_TYPES:-$ALL_TYPES}"
BUSYBOX="${AIRSIDE_BUSYBOX:-/bin/busybox}"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || die "needs the Go toolchain (go on PATH, or GO=/path/to/go)"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false GOPROXY=off CGO_ENABLED=0
export GOCACHE="${AIRSIDE_GOCACHE:-$AIRSIDE_CACHE/go/build}"
go_version="$("$GO" env GOVERSION)"

base_of() { [[ "$1" == git ]] && echo debian || echo busybox; }

busybox_key() {
  [[ -x "$BUSYBOX" ]] || die "needs a static busybox at $BUSYBOX (apt-get install busybox-static)"
  sha256sum "$BUSYBOX" | cut -c1-16
}
debian_pkgs() { grep -v '^\s*#' "$HERE/$1/rootfs.packages" | xargs; }
debian_key() { printf '%s\n' "$SUITE" "$(debian_pkgs "$1")" "$MIRROR" | sha256sum | cut -c1-10; }

recipe() {  # recipe TYPE: what the built type depends on, hashed
  local t="$1" base
  base="$(base_of "$t")"
  {
    printf '%s\n' "$t" "$go_version" "$base"
    if [[ "$base" == busybox ]]; then busybox_key; else debian_key "$t"; fi
    cat "$HERE/build.sh" "$HERE/go.mod"
    (cd "$HERE" && find resource "$t" -type f | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -c1-16
}

busybox_rootfs() {  # busybox_rootfs DIR: busybox-static with one symlink per applet
  local r="$1" a
  mkdir -p "$r"/{bin,etc,root,dev,proc,sys,opt/resource} "$r/tmp"
  chmod 1777 "$r/tmp"
  cp "$BUSYBOX" "$r/bin/busybox"
  for a in $("$BUSYBOX" --list); do
    [[ "$a" == busybox || -e "$r/bin/$a" ]] || ln -s busybox "$r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
}

debian_rootfs() {  # debian_rootfs TYPE DIR: the cached minbase tar, unpacked
  local t="$1" r="$2" pkgs key tar t0
  pkgs="$(debian_pkgs "$t")"
  key="$(debian_key "$t")"
  tar="$CACHE/$t-base-$SUITE-$key.tar"
  if [[ ! -s "$tar" ]]; then
    command -v mmdebstrap >/dev/null || die "needs mmdebstrap (apt-get install -y mmdebstrap)"
    mkdir -p "$CACHE"
    log "$t: mmdebstrap $SUITE minbase + $pkgs (once; cached as $tar)"
    t0=$SECONDS
    mmdebstrap --quiet --format=tar --variant=minbase --include="${pkgs// /,}" --aptopt='Acquire::Retries "3"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$SUITE" "$tar.tmp" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
      "deb $SECURITY_MIRROR $SUITE-security main" || { rm -f "$tar.tmp"; die "mmdebstrap failed"; }
    mv "$tar.tmp" "$tar"
    log "$t: base rootfs in $((SECONDS - t0))s, $(du -h "$tar" | cut -f1)"
  fi
  mkdir -p "$r"
  tar -x --numeric-owner -C "$r" -f "$tar"
  mkdir -p "$r/opt/resource"
}

build_type() {  # build_type TYPE RECIPE
  local t="$1" rec="$2" new="$OUT/.$1.new" old="$OUT/.$1.old" version
  rm -rf "$new" "$old"
  mkdir -p "$new"
  if [[ "$(base_of "$t")" == busybox ]]; then busybox_rootfs "$new/rootfs"; else debian_rootfs "$t" "$new/rootfs"; fi
  (cd "$HERE" && "$GO" build -trimpath -ldflags='-s -w' -o "$new/rootfs/opt/resource/$t" "./$t") \
    || die "$t: go build failed"
  for s in check in out; do ln -s "$t" "$new/rootfs/opt/resource/$s"; done
  version="$(tr -d '[:space:]' <"$HERE/$t/VERSION")+$rec"
  printf '{"type": "%s", "version": "%s", "privileged": false, "unique_version_history": false}\n' \
    "$t" "$version" >"$new/resource_metadata.json"
  echo "$rec" >"$new/.recipe"
  if [[ -e "$OUT/$t" ]]; then mv "$OUT/$t" "$old"; fi
  mv "$new" "$OUT/$t"
  rm -rf "$old"
}

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9  # one build of OUT_DIR at a time
for t in $TYPES; do
  [[ " $ALL_TYPES " == *" $t "* ]] || die "unknown resource type $t (known: $ALL_TYPES)"
  rec="$(recipe "$t")"
  if [[ -f "$OUT/$t/.recipe" && "$(cat "$OUT/$t/.recipe")" == "$rec" && -x "$OUT/$t/rootfs/opt/resource/check" ]]; then
    log "$t: cached ($OUT/$t)"
    continue
  fi
  t0=$SECONDS
  build_type "$t" "$rec"
  log "$t: built in $((SECONDS - t0))s ($OUT/$t, $(du -sh "$OUT/$t/rootfs" | cut -f1))"
done
