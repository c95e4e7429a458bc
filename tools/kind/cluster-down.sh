#!/usr/bin/env bash
# Delete the airside kind cluster (build caches and images are kept).
#   bash tools/kind/cluster-down.sh [--name NAME]
set -euo pipefail
_step_total=1
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME="${AIRSIDE_KIND_CLUSTER:-airside}"
[[ "${1:-}" == --name ]] && NAME="$2"
[[ "${1:-}" == --name=* ]] && NAME="${1#*=}"
KIND="$(kind_bin)"
[[ -x "$KIND" ]] || KIND="$(command -v kind || true)"
if [[ -z "$KIND" ]] || ! docker_ok; then info "no kind/docker available; nothing to delete"; exit 0; fi
if "$KIND" get clusters 2>/dev/null | grep -qxF "$NAME"; then
  step "deleting kind cluster '$NAME'"
  "$KIND" delete cluster --name "$NAME" >&2
else
  info "kind cluster '$NAME' does not exist"
fi
if [[ "$NAME" == airside ]]; then rm -f "$KIND_CACHE/kubeconfig"; else rm -f "$KIND_CACHE/kubeconfig-$NAME"; fi
rm -f "$KIND_CACHE/kind-config-$NAME.yaml"
