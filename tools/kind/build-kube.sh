#!/usr/bin/env bash
# Build the Kubernetes server binaries from the Go module proxy.
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 with local
# replace directives, so `go install k8s.io/kubernetes/cmd/...@vX` is
# rejected. We generate a tiny wrapper module that requires the release and
# replaces every staging module with its published v0.X.Y tag.
#
# Output: $KIND_CACHE/kube-$K8S_VERSION/bin/{kubeadm,kubelet,kubectl,kube-*}
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT="$KIND_CACHE/kube-$K8S_VERSION"
if is_done "$OUT"; then info "kube binaries $K8S_VERSION: cached ($OUT)"; exit 0; fi
need go "Go toolchain; install Go >= 1.24"

STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
  endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
  sample-apiserver sample-cli-plugin sample-controller)
CMDS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

mod="$OUT/wrapper"
rm -rf "$OUT"; mkdir -p "$mod" "$OUT/bin"
{
  echo "module airside.local/kubebuild"
  echo
  echo "go 1.24.0"
  echo
  echo "godebug default=go1.24"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  for s in "${STAGING[@]}"; do echo "replace k8s.io/$s => k8s.io/$s $K8S_STAGING_VERSION"; done
} > "$mod/go.mod"
# a blank-import file so `go mod tidy`-style resolution keeps the commands
{
  echo "//go:build tools"
  echo "package kubebuild"
  echo "import ("
  for c in "${CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
  echo ")"
} > "$mod/tools.go"

cd "$mod"
info "resolving k8s.io/kubernetes@$K8S_VERSION and ${#STAGING[@]} staging modules via $GOPROXY"
timed "module download" go mod download k8s.io/kubernetes
pkgs=(); for c in "${CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
# populate go.sum for everything the commands import
timed "dependency resolution" go get "${pkgs[@]}" >/dev/null 2>&1 || go get "${pkgs[@]}"

ver="${K8S_VERSION#v}"; major="${ver%%.*}"; minor="${ver#*.}"; minor="${minor%%.*}"
bd="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$bd"
done

i=0
for c in "${CMDS[@]}"; do
  i=$((i + 1))
  info "[$i/${#CMDS[@]}] go build $c ($K8S_VERSION, go $(go env GOVERSION))"
  CGO_ENABLED=0 timed "$c" go build -p "$GO_BUILD_P" -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "$ld" -o "$OUT/bin/$c" "k8s.io/kubernetes/cmd/$c" \
    || die "building $c $K8S_VERSION failed (try AIRSIDE_GOTOOLCHAIN=go1.24.13)"
done
"$OUT/bin/kubeadm" version -o short
mark_done "$OUT"
