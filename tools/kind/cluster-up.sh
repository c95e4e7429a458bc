#!/usr/bin/env bash
# Bring up a kind cluster for airside, offline-capable.
#
#   bash tools/kind/cluster-up.sh [--nodes N] [--name NAME]
#
# Order of preference:
#   1. KUBECONFIG points at a reachable cluster        -> use it, create nothing
#   2. a kind cluster NAME already exists and answers  -> reuse it
#   3. KIND_NODE_IMAGE set, or a registry is reachable -> kind create with that
#      image (official kindest/node), nothing built except the kind CLI
#   4. otherwise build everything from Debian packages + Go modules (cached
#      under $AIRSIDE_CACHE/kind, keyed by tools/kind/versions.env) and create
#
# Env: AIRSIDE_CACHE (default /var/cache/airside), AIRSIDE_KIND_NODES (3),
#      AIRSIDE_KIND_CLUSTER (airside), AIRSIDE_KIND_ONLINE (auto|0|1),
#      KIND_NODE_IMAGE, KUBECONFIG.
# The kubeconfig is written to $AIRSIDE_CACHE/kind/kubeconfig (printed at the end).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_step_total=10
. "$HERE/lib.sh"

NODES="${AIRSIDE_KIND_NODES:-3}"
NAME="${AIRSIDE_KIND_CLUSTER:-airside}"
ONLINE="${AIRSIDE_KIND_ONLINE:-auto}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#*=}"; shift ;;
    --name) NAME="$2"; shift 2 ;;
    --name=*) NAME="${1#*=}"; shift ;;
    --offline) ONLINE=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer (got '$NODES')"
if [[ "$NAME" == airside ]]; then OUT_KUBECONFIG="$KIND_CACHE/kubeconfig"; else OUT_KUBECONFIG="$KIND_CACHE/kubeconfig-$NAME"; fi
T0=$SECONDS

kubectl_cmd() {
  if [[ -x "$KIND_CACHE/bin/kubectl" ]]; then echo "$KIND_CACHE/bin/kubectl"; return; fi
  if [[ -x "$(kube_bin_dir)/kubectl" ]]; then echo "$(kube_bin_dir)/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
  fi
  return 0
}
reachable() { # kubeconfig
  local k; k="$(kubectl_cmd)"
  if [[ -n "$k" ]]; then
    "$k" --kubeconfig "$1" --request-timeout=10s get --raw /readyz >/dev/null 2>&1
  else
    python3 - "$1" <<'PY' >/dev/null 2>&1
import sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
client.VersionApi().get_code(_request_timeout=10)
PY
  fi
}
finish() {
  info "cluster '$NAME' ready in $((SECONDS - T0))s"
  echo "KUBECONFIG=$1"
}

step "checking for an existing cluster"
if [[ -n "${KUBECONFIG:-}" && "${KUBECONFIG}" != "$OUT_KUBECONFIG" ]]; then
  if [[ -f "${KUBECONFIG%%:*}" ]] && reachable "$KUBECONFIG"; then
    info "KUBECONFIG=$KUBECONFIG points at a reachable cluster; not creating one"
    finish "$KUBECONFIG"; exit 0
  fi
  info "KUBECONFIG=$KUBECONFIG is not a reachable cluster; creating '$NAME'"
fi

step "docker engine"
if ! docker_ok; then
  bash "$KIND_TOOLS_DIR/../docker/dockerd-up.sh"
fi
require_docker
# kubelet sysctls on the host (a sandboxed node cannot write them)
for kv in vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
          kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000 \
          fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512; do
  [[ "$(sysctl -n "${kv%%=*}" 2>/dev/null)" == "${kv#*=}" ]] || sysctl -qw "$kv" 2>/dev/null \
    || warn "could not set host sysctl $kv; the kubelet may fail to start"
done

step "kind CLI ($KIND_VERSION)"
timed "kind CLI" bash "$KIND_TOOLS_DIR/build-kind.sh"
KIND="$(kind_bin)"
# stable paths for other tools (pytest-kind --kind-bin, scripts): $KIND_CACHE/bin
mkdir -p "$KIND_CACHE/bin"; ln -sfn "$KIND" "$KIND_CACHE/bin/kind"
export PATH="$KIND_CACHE/bin:$PATH"

if "$KIND" get clusters 2>/dev/null | grep -qxF "$NAME"; then
  "$KIND" export kubeconfig --name "$NAME" --kubeconfig "$OUT_KUBECONFIG" >/dev/null 2>&1 || true
  if reachable "$OUT_KUBECONFIG"; then
    info "kind cluster '$NAME' already exists and answers; reusing it"
    _step_n=9; step "waiting for nodes"; finish "$OUT_KUBECONFIG"; exit 0
  fi
  warn "kind cluster '$NAME' exists but does not answer; recreating it"
  "$KIND" delete cluster --name "$NAME" >/dev/null 2>&1 || true
fi

# decide: official image (online) or local build (offline)
IMAGE="${KIND_NODE_IMAGE:-}"
if [[ -z "$IMAGE" && "$ONLINE" != 0 ]]; then
  code="$(curl -sS -m 5 -o /dev/null -w '%{http_code}' https://registry-1.docker.io/v2/ 2>/dev/null || true)"
  if [[ "$ONLINE" == 1 || "$code" == 401 || "$code" == 200 ]]; then
    IMAGE="$(grep -o 'kindest/node:[^"]*' "$(mod_dir "sigs.k8s.io/kind@$KIND_VERSION")/pkg/apis/config/defaults/image.go")"
    info "registry reachable: using kind's official node image $IMAGE"
  fi
fi

if [[ -n "$IMAGE" ]]; then
  _step_n=7
  step "node image $IMAGE (prebuilt)"
  have_image "$IMAGE" || timed "docker pull" docker pull "$IMAGE" >&2 || die "cannot pull node image $IMAGE"
else
  ensure_pkgs mmdebstrap gcc libc6-dev libseccomp-dev pkg-config jq ca-certificates curl
  need go "a Go toolchain >= 1.21 on PATH (https://go.dev/dl or the golang.org/toolchain module); kind and Kubernetes are built from Go modules"
  step "Kubernetes $K8S_VERSION binaries (Go modules)"
  timed "kube binaries" bash "$KIND_TOOLS_DIR/build-kube.sh"
  step "node components: etcd, coredns, kindnetd, local-path, containerd, runc, crictl, CNI, pause"
  timed "components" bash "$KIND_TOOLS_DIR/build-components.sh"
  step "Debian $DEBIAN_SUITE root filesystems (mmdebstrap)"
  timed "rootfs" bash "$KIND_TOOLS_DIR/build-rootfs.sh"
  step "component images + kind base image"
  timed "images" bash "$KIND_TOOLS_DIR/build-images.sh"
  step "kind build node-image"
  IMAGE="$(bash "$KIND_TOOLS_DIR/build-node-image.sh")"
  # stable alias for pytest-kind --kind-image and humans
  docker tag "$IMAGE" kindest/node:airside
  info "node image $IMAGE (alias kindest/node:airside)"
  ln -sfn "$(kube_bin_dir)/kubectl" "$KIND_CACHE/bin/kubectl"
  # drop images built from older recipes (their tags carry an older key)
  key="$(recipe_key)"
  docker images --format '{{.Repository}}:{{.Tag}}' \
    | grep -E '^(kindest/node:.*-airside-|kindest/base:airside-|airside/debian-iptables-wrapped:)' \
    | grep -v -e "$key" | xargs -r docker rmi >/dev/null 2>&1 || true
  keep_node="$(bash "$KIND_TOOLS_DIR/build-rootfs.sh" tag-node)"; keep_ipt="$(bash "$KIND_TOOLS_DIR/build-rootfs.sh" tag-iptables)"
  docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^airside/debian-(node|iptables):' \
    | grep -vxF -e "$keep_node" -e "$keep_ipt" | xargs -r docker rmi >/dev/null 2>&1 || true
  docker image prune -f --filter label=airside.key >/dev/null 2>&1 || true
  for d in "$KIND_CACHE"/node-*; do [[ "$d" == "$KIND_CACHE/node-$key" ]] || rm -rf "$d"; done
  for f in "$KIND_CACHE"/rootfs/*.tar; do
    [[ -e "$f" ]] || continue
    b="$(basename "$f" .tar)"
    [[ "$b" == "$(echo "${keep_node##*/}" | tr : -)" || "$b" == "$(echo "${keep_ipt##*/}" | tr : -)" ]] || rm -f "$f"
  done
  # the Go build cache (~5 GB) only speeds up rebuilding after a version bump
  if [[ "${AIRSIDE_KEEP_GOCACHE:-0}" != 1 && -d "$GOCACHE" ]]; then
    info "removing the Go build cache $GOCACHE (set AIRSIDE_KEEP_GOCACHE=1 to keep it)"
    chmod -R u+w "$GOCACHE" 2>/dev/null; rm -rf "$GOCACHE"
  fi
fi

step "kind create cluster '$NAME' (1 control plane + $((NODES - 1)) workers)"
CFG="$KIND_CACHE/kind-config-$NAME.yaml"
cp "$KIND_TOOLS_DIR/kind-config.yaml" "$CFG"
if [[ ! -c /dev/kmsg ]]; then
  warn "host has no /dev/kmsg; giving nodes /dev/null as /dev/kmsg (kubelet OOM events will not be reported)"
  KMSG=$'  extraMounts:\n  - hostPath: /dev/null\n    containerPath: /dev/kmsg\n'
else
  KMSG=""
fi
printf '%s' "$KMSG" >> "$CFG"
for _ in $(seq 2 "$NODES"); do printf -- '- role: worker\n%s' "$KMSG" >> "$CFG"; done
mkdir -p "$(dirname "$OUT_KUBECONFIG")"
t0=$SECONDS
"$KIND" create cluster --name "$NAME" --image "$IMAGE" --config "$CFG" \
  --kubeconfig "$OUT_KUBECONFIG" --wait 5m >&2 || {
    warn "kind create cluster failed; node logs follow (also: $KIND export logs --name $NAME)"
    for n in $(docker ps -a --filter "label=io.x-k8s.kind.cluster=$NAME" --format '{{.Names}}'); do
      docker exec "$n" journalctl -u kubelet -u containerd --no-pager 2>/dev/null | tail -25 >&2 || docker logs "$n" 2>&1 | tail -25 >&2
    done
    die "kind create cluster failed (image $IMAGE)"
  }
info "kind create cluster done in $((SECONDS - t0))s"

step "waiting for nodes, CoreDNS and the storage class"
if [[ ! -x "$KIND_CACHE/bin/kubectl" ]]; then
  # online path: take kubectl from the node image instead of building it
  docker cp "$NAME-control-plane:/usr/bin/kubectl" "$KIND_CACHE/bin/kubectl" >/dev/null 2>&1 || true
fi
K="$(kubectl_cmd)"; [[ -n "$K" ]] || K="$(docker exec "$NAME-control-plane" which kubectl 2>/dev/null || true)"
if [[ -x "$K" ]]; then
  "$K" --kubeconfig "$OUT_KUBECONFIG" wait --for=condition=Ready nodes --all --timeout=300s >&2 \
    || die "nodes did not become Ready"
  "$K" --kubeconfig "$OUT_KUBECONFIG" -n kube-system rollout status deployment/coredns --timeout=300s >&2 \
    || die "CoreDNS did not become ready"
  "$K" --kubeconfig "$OUT_KUBECONFIG" -n local-path-storage rollout status deployment/local-path-provisioner --timeout=300s >&2 \
    || die "local-path-provisioner did not become ready"
  "$K" --kubeconfig "$OUT_KUBECONFIG" get nodes -o wide >&2
fi
finish "$OUT_KUBECONFIG"
