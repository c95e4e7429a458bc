#!/usr/bin/env bash
# `kind build node-image` (unmodified kind) from the locally built base image
# and Kubernetes server tarball. Prints the node image name on stdout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_docker
KEY="$(recipe_key)"
NODE="$(node_image_name)"
BASE="$(base_image_name)"
TARBALL="$KIND_CACHE/node-$KEY/kubernetes-server-linux-amd64.tar.gz"
KIND="$(kind_bin)"
if have_image "$NODE"; then info "node image $NODE: cached"; echo "$NODE"; exit 0; fi
[[ -x "$KIND" ]] || die "missing kind binary $KIND (run build-kind.sh)"
have_image "$BASE" || die "missing base image $BASE (run build-images.sh)"
[[ -s "$TARBALL" ]] || die "missing Kubernetes server tarball $TARBALL (run build-images.sh)"
info "kind build node-image --type file ($K8S_VERSION) --base-image $BASE"
info "(kind first tries 'docker pull' of the local base image; that failure is expected offline and ignored by kind)"
"$KIND" build node-image --type file "$TARBALL" --base-image "$BASE" --image "$NODE" >&2 \
  || die "kind build node-image failed"
have_image "$NODE" || die "kind build node-image did not produce $NODE"
echo "$NODE"
