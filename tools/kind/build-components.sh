#!/usr/bin/env bash
# Build every non-Kubernetes binary the node and its images need, from the Go
# module proxy (and pause from the k8s.io/kubernetes module's C source).
# Output: $KIND_CACHE/components/<name>-<version>/bin/*
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COMP="$KIND_CACHE/components"
mkdir -p "$COMP"
need go "Go toolchain; install Go >= 1.24"

# gobuild NAME VERSION [env...] -- go install args...
gobuild() {
  local name="$1" ver="$2"; shift 2
  local envs=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done; shift
  local out="$COMP/$name-$ver"
  if is_done "$out"; then info "$name $ver: cached"; return 0; fi
  rm -rf "$out"; mkdir -p "$out/bin"
  info "building $name $ver"
  local t0=$SECONDS
  env GOBIN="$out/bin" CGO_ENABLED=0 "${envs[@]}" go install -p "$GO_BUILD_P" -trimpath "$@" \
    || die "building $name $ver from the Go module proxy failed"
  mark_done "$out"
  info "$name $ver built in $((SECONDS - t0))s"
}

# modules whose go.mod carries replace/exclude directives cannot be
# `go install`ed; build them from a throwaway wrapper module instead.
# wrapbuild NAME VERSION MODULE [env...] -- go build args... -- PKG...
wrapbuild() {
  local name="$1" ver="$2" module="$3"; shift 3
  local envs=() args=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done; shift
  while [[ "$1" != "--" ]]; do args+=("$1"); shift; done; shift
  local out="$COMP/$name-$ver"
  if is_done "$out"; then info "$name $ver: cached"; return 0; fi
  rm -rf "$out"; mkdir -p "$out/bin" "$out/wrapper"
  info "building $name $ver (wrapper module)"
  local t0=$SECONDS
  ( cd "$out/wrapper"
    printf 'module airside.local/%sbuild\n\ngo 1.24.0\n' "$name" > go.mod
    go get "$module@$ver" >/dev/null 2>&1 || go get "$module@$ver"
    env CGO_ENABLED=0 "${envs[@]}" go build -p "$GO_BUILD_P" -trimpath "${args[@]}" -o "$out/bin/" "$@"
  ) || die "building $name $ver via wrapper module failed"
  rm -rf "$out/wrapper"
  mark_done "$out"
  info "$name $ver built in $((SECONDS - t0))s"
}

wrapbuild etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 -- -ldflags "-s -w" -- go.etcd.io/etcd/server/v3
# go names a .../server/v3 main package "server"
e="$COMP/etcd-$ETCD_VERSION/bin"; [[ -x "$e/etcd" || ! -x "$e/server" ]] || mv "$e/server" "$e/etcd"
gobuild coredns "$COREDNS_VERSION" -- -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
gobuild local-path-provisioner "$LOCAL_PATH_VERSION" -- \
  -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_VERSION" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
# kindnetd is a nested module that some module proxies/mirrors do not carry;
# without it build-images.sh uses images/kindnet-lite instead.
KN="$COMP/kindnetd-${KINDNETD_COMMIT:0:12}"
if [[ -f "$KN.unavailable" && "${AIRSIDE_RETRY_KINDNETD:-0}" != 1 ]]; then
  info "kindnetd ${KINDNETD_COMMIT:0:12}: not on the module proxy (checked $(cat "$KN.unavailable")); using kindnet-lite"
elif ! ( gobuild kindnetd "${KINDNETD_COMMIT:0:12}" -- -ldflags "-s -w" \
       "sigs.k8s.io/kind/images/kindnetd/cmd/kindnetd@$KINDNETD_COMMIT" 2>"$COMP/kindnetd.err" ); then
  rm -rf "$KN"
  if grep -qE '40[34]|not available|unknown revision' "$COMP/kindnetd.err"; then
    date -u +%FT%TZ > "$KN.unavailable"
    warn "kindnetd@${KINDNETD_COMMIT:0:12} is not available from $GOPROXY; the node uses airside's kindnet-lite agent instead (AIRSIDE_RETRY_KINDNETD=1 retries)"
  else
    cat "$COMP/kindnetd.err" >&2
    warn "building kindnetd failed; the node uses airside's kindnet-lite agent instead"
  fi
fi
rm -f "$COMP/kindnetd.err"
wrapbuild containerd "$CONTAINERD_VERSION" github.com/containerd/containerd/v2 -- \
  -tags "no_aufs no_zfs no_btrfs no_devmapper" \
  -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" -- \
  github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/ctr \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
if ! is_done "$COMP/runc-$RUNC_VERSION"; then
  need gcc "C compiler for runc (apt-get install gcc libc6-dev)"
  [[ -e /usr/include/seccomp.h ]] || die "missing libseccomp headers for runc (apt-get install libseccomp-dev pkg-config)"
fi
gobuild runc "$RUNC_VERSION" CGO_ENABLED=1 -- -tags seccomp \
  -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION"
gobuild crictl "$CRICTL_VERSION" -- \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
  "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
gobuild cni-plugins "$CNI_PLUGINS_VERSION" -- -ldflags "-s -w" \
  "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/main/ptp@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS_VERSION"

# pause: Kubernetes' own tiny C program, taken from the k8s.io/kubernetes module zip
out="$COMP/pause-$K8S_VERSION"
if ! is_done "$out"; then
  need gcc "C compiler for the pause binary (apt-get install gcc libc6-dev)"
  info "building pause from k8s.io/kubernetes@$K8S_VERSION build/pause/linux/pause.c"
  dir="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  [[ -f "$dir/build/pause/linux/pause.c" ]] || die "pause.c not found in k8s.io/kubernetes@$K8S_VERSION module"
  rm -rf "$out"; mkdir -p "$out/bin"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_IMAGE_TAG-airside" -o "$out/bin/pause" "$dir/build/pause/linux/pause.c" \
    || die "compiling pause.c failed (needs static glibc: libc6-dev)"
  strip "$out/bin/pause" || true
  mark_done "$out"
fi
info "components ready under $COMP"
