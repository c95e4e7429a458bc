#!/usr/bin/env bash
# Build the Debian root filesystems every image starts from, with mmdebstrap,
# and `docker import` them. No registry is involved.
#
#   airside/debian-node:<suite>-<hash>      systemd + kind's node package set
#   airside/debian-iptables:<suite>-<hash>  minbase + iptables/nftables/conntrack/curl/jq
#                                           (kube-proxy, kindnetd, local-path-helper)
#
# The tarballs are cached under $KIND_CACHE/rootfs keyed by suite and package list.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIRROR="${AIRSIDE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${AIRSIDE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

NODE_PKGS="systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz fuse-overlayfs nfs-common open-iscsi bash ca-certificates curl jq procps"
IPT_PKGS="iptables nftables conntrack iproute2 curl jq ca-certificates"

rootfs_tag() { # name pkgs -> image tag
  local h; h="$(printf '%s\n' "$DEBIAN_SUITE" "$2" "$MIRROR" "${AIRSIDE_RECIPE_SALT:-}" | sha256sum | cut -c1-10)"
  echo "airside/debian-$1:$DEBIAN_SUITE-$h"
}

build_one() { # name pkgs
  local name="$1" pkgs="$2" tag tar
  tag="$(rootfs_tag "$name" "$pkgs")"
  tar="$KIND_CACHE/rootfs/${tag##*/}.tar"; tar="${tar/:/-}"
  if have_image "$tag"; then info "rootfs $tag: cached image"; return 0; fi
  if [[ ! -s "$tar" ]]; then
    need mmdebstrap "Debian package mmdebstrap (apt-get install mmdebstrap)"
    mkdir -p "$KIND_CACHE/rootfs"
    info "mmdebstrap $DEBIAN_SUITE ($name: $pkgs) from $MIRROR"
    local t0=$SECONDS
    mmdebstrap --quiet --format=tar --variant=minbase --include="${pkgs// /,}" \
      --aptopt='Acquire::Retries "3"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      "$DEBIAN_SUITE" "$tar.tmp" \
      "deb $MIRROR $DEBIAN_SUITE main" "deb $MIRROR $DEBIAN_SUITE-updates main" \
      "deb $SECURITY_MIRROR $DEBIAN_SUITE-security main" \
      || { rm -f "$tar.tmp"; die "mmdebstrap of the $name rootfs failed (is $MIRROR reachable?)"; }
    mv "$tar.tmp" "$tar"
    info "rootfs $name built in $((SECONDS - t0))s ($(du -h "$tar" | cut -f1))"
  fi
  require_docker
  docker import "$tar" "$tag" >/dev/null || die "docker import of $tar failed"
  info "imported $tag"
}

case "${1:-all}" in
  tag-node) rootfs_tag node "$NODE_PKGS" ;;
  tag-iptables) rootfs_tag iptables "$IPT_PKGS" ;;
  all) build_one node "$NODE_PKGS"; build_one iptables "$IPT_PKGS" ;;
  *) die "usage: $0 [all|tag-node|tag-iptables]" ;;
esac
