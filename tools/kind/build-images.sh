#!/usr/bin/env bash
# Build every image the kind node needs, locally, tagged exactly as
# kubeadm / kind v0.30.0 expect, plus kind's base image with the non-kube
# images pre-imported into its containerd store and a `ctr` shim (see
# images/ctr-shim). Finally lay out the Kubernetes server tarball that
# `kind build node-image --type file` consumes.
#
# Inputs: build-kube.sh, build-components.sh, build-rootfs.sh outputs.
# Outputs: docker images; $KIND_CACHE/node-<key>/kubernetes-server-linux-amd64.tar.gz
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_docker

KEY="$(recipe_key)"
WORK="$KIND_CACHE/node-$KEY"
CTX="$WORK/ctx"
COMP="$KIND_CACHE/components"
KBIN="$(kube_bin_dir)"
IMG_DIR="$KIND_TOOLS_DIR/images"
mkdir -p "$WORK"

for d in "$KBIN" "$COMP/etcd-$ETCD_VERSION" "$COMP/coredns-$COREDNS_VERSION" "$COMP/pause-$K8S_VERSION" \
         "$COMP/local-path-provisioner-$LOCAL_PATH_VERSION" \
         "$COMP/containerd-$CONTAINERD_VERSION" "$COMP/runc-$RUNC_VERSION" "$COMP/crictl-$CRICTL_VERSION" \
         "$COMP/cni-plugins-$CNI_PLUGINS_VERSION"; do
  [[ -f "$d/.done" || "$d" == "$KBIN" ]] || die "missing build output $d (run build-components.sh)"
done
[[ -x "$KBIN/kube-apiserver" ]] || die "missing kube binaries in $KBIN (run build-kube.sh)"

NODE_ROOTFS="$(bash "$KIND_TOOLS_DIR/build-rootfs.sh" tag-node)"
IPT_ROOTFS="$(bash "$KIND_TOOLS_DIR/build-rootfs.sh" tag-iptables)"
have_image "$NODE_ROOTFS" && have_image "$IPT_ROOTFS" || die "missing rootfs images (run build-rootfs.sh)"

image_current() { # tag -> true if built with this recipe key
  [[ "$(docker image inspect -f '{{index .Config.Labels "airside.key"}}' "$1" 2>/dev/null)" == "$KEY" ]]
}

# dbuild TAG DOCKERFILE BIN DEST [extra build args...]
dbuild() {
  local tag="$1" df="$2" bin="$3" dest="$4"; shift 4
  if image_current "$tag"; then info "image $tag: cached"; return 0; fi
  local c="$CTX/$(echo "$tag" | tr '/:' '__')"
  rm -rf "$c"; mkdir -p "$c"
  cp "$IMG_DIR/$df" "$c/Dockerfile"
  cp "$bin" "$c/$(basename "$bin")"; chmod 0755 "$c/$(basename "$bin")"
  info "docker build $tag"
  docker_build --label "airside.key=$KEY" --build-arg "BIN=$(basename "$bin")" --build-arg "DEST=$dest" \
    "$@" -t "$tag" "$c" || die "docker build of $tag failed"
}

# 1. Debian iptables base for kube-proxy / kindnetd / local-path
IPT="airside/debian-iptables-wrapped:$KEY"
if ! have_image "$IPT"; then
  c="$CTX/iptables-base"; rm -rf "$c"; mkdir -p "$c"
  cp "$IMG_DIR/iptables-base.Dockerfile" "$c/Dockerfile"; cp "$IMG_DIR/iptables-wrapper" "$c/"
  info "docker build $IPT"
  docker_build --build-arg "BASE=$IPT_ROOTFS" -t "$IPT" "$c" || die "building $IPT failed"
fi

# 2. component images, tagged with the names kubeadm/kind use
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  dbuild "registry.k8s.io/$c:$K8S_VERSION" static.Dockerfile "$KBIN/$c" "/usr/local/bin/$c"
done
dbuild "registry.k8s.io/kube-proxy:$K8S_VERSION" debian.Dockerfile "$KBIN/kube-proxy" /usr/local/bin/kube-proxy --build-arg "BASE=$IPT"
dbuild "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" static.Dockerfile "$COMP/etcd-$ETCD_VERSION/bin/etcd" /usr/local/bin/etcd
dbuild "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns.Dockerfile "$COMP/coredns-$COREDNS_VERSION/bin/coredns" /coredns
dbuild "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" pause.Dockerfile "$COMP/pause-$K8S_VERSION/bin/pause" /pause
if [[ -f "$COMP/kindnetd-${KINDNETD_COMMIT:0:12}/.done" ]]; then
  dbuild "kindest/kindnetd:$KINDNETD_IMAGE_TAG" kindnetd.Dockerfile "$COMP/kindnetd-${KINDNETD_COMMIT:0:12}/bin/kindnetd" /usr/bin/kindnetd --build-arg "BASE=$IPT"
else
  KEY="$KEY-lite" dbuild "kindest/kindnetd:$KINDNETD_IMAGE_TAG" kindnetd.Dockerfile "$IMG_DIR/kindnet-lite" /usr/bin/kindnetd --build-arg "BASE=$IPT"
fi
dbuild "kindest/local-path-provisioner:$LOCAL_PATH_IMAGE_TAG" debian.Dockerfile \
  "$COMP/local-path-provisioner-$LOCAL_PATH_VERSION/bin/local-path-provisioner" /usr/local/bin/local-path-provisioner --build-arg "BASE=$IPT"
# the helper only needs sh/mkdir/rm: the Debian base itself
if ! image_current "kindest/local-path-helper:$LOCAL_PATH_HELPER_IMAGE_TAG"; then
  docker_build --label "airside.key=$KEY" -t "kindest/local-path-helper:$LOCAL_PATH_HELPER_IMAGE_TAG" - <<<"FROM $IPT" \
    || die "building local-path-helper failed"
fi

# 3. save images: kube-* go into the server tarball, the rest get pre-imported
SRV="$WORK/kubernetes"
TARBALL="$WORK/kubernetes-server-linux-amd64.tar.gz"
if [[ ! -s "$TARBALL" ]]; then
  info "writing $TARBALL"
  rm -rf "$SRV"; mkdir -p "$SRV/server/bin"
  echo "$K8S_VERSION" > "$SRV/version"
  for b in kubeadm kubelet kubectl; do cp "$KBIN/$b" "$SRV/server/bin/"; done
  for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    docker save -o "$SRV/server/bin/$c.tar" "registry.k8s.io/$c:$K8S_VERSION"
  done
  tar -C "$WORK" -cf - kubernetes | gzip -1 > "$TARBALL.tmp" && mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$SRV"
fi

# 4. kind's base image
BASE="$(base_image_name)"
if have_image "$BASE"; then info "image $BASE: cached"; rm -rf "$CTX"; exit 0; fi
KIND_MOD="$(mod_dir "sigs.k8s.io/kind@$KIND_VERSION")"
[[ -d "$KIND_MOD/images/base/files" ]] || die "kind module $KIND_VERSION has no images/base/files"
c="$CTX/node-base"; rm -rf "$c"; mkdir -p "$c/files"
cp -r "$KIND_MOD/images/base/files/." "$c/files/"
chmod -R u+w "$c/files"
# kind's modes: scripts and directories 0755, everything else 0644
find "$c/files" -type d -exec chmod 0755 {} +
find "$c/files" -type f -exec chmod 0644 {} +
chmod 0755 "$c/files/usr/local/bin/"* "$c/files/kind/bin/"*
mkdir -p "$c/files/usr/local/sbin" "$c/files/opt/cni/bin"
cp "$COMP/containerd-$CONTAINERD_VERSION/bin/"* "$c/files/usr/local/bin/"
cp "$COMP/crictl-$CRICTL_VERSION/bin/crictl" "$c/files/usr/local/bin/"
cp "$COMP/runc-$RUNC_VERSION/bin/runc" "$c/files/usr/local/sbin/runc"
cp "$COMP/cni-plugins-$CNI_PLUGINS_VERSION/bin/"* "$c/files/opt/cni/bin/"
cp "$IMG_DIR/ctr-shim" "$c/files/usr/local/sbin/ctr"
chmod 0755 "$c/files/usr/local/bin/"* "$c/files/usr/local/sbin/"* "$c/files/opt/cni/bin/"*
cp "$IMG_DIR/node-base.Dockerfile" "$c/Dockerfile"
info "docker build $BASE (stage 1: rootfs + kind files + containerd/runc/crictl/CNI)"
docker_build --build-arg "BASE=$NODE_ROOTFS" -t "$BASE-stage1" "$c" || die "building $BASE failed"

info "pre-importing etcd/coredns/pause/kindnetd/local-path images into the base image's containerd"
EXTRA=("registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
  "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" "kindest/kindnetd:$KINDNETD_IMAGE_TAG"
  "kindest/local-path-provisioner:$LOCAL_PATH_IMAGE_TAG" "kindest/local-path-helper:$LOCAL_PATH_HELPER_IMAGE_TAG")
cid="$(docker run -d --entrypoint sleep "$BASE-stage1" infinity)"
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
docker exec "$cid" mkdir -p /tmp/airside-images
i=0
for img in "${EXTRA[@]}"; do
  i=$((i + 1))
  docker save "$img" | docker exec -i "$cid" sh -c "cat > /tmp/airside-images/$i.tar"
done
docker exec --privileged "$cid" bash -c '
  set -e
  containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done
  /usr/local/bin/ctr version >/dev/null || { cat /tmp/containerd.log; exit 1; }
  for t in /tmp/airside-images/*.tar; do
    /usr/local/bin/ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests "$t" >/dev/null
  done
  /usr/local/bin/ctr -n k8s.io images ls -q | grep -v "^sha256:"
  kill %1; wait || true
  rm -rf /tmp/airside-images /tmp/containerd.log /run/containerd
' >&2 || die "pre-importing images into the base image failed"
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
  --change "LABEL airside.key=$KEY" "$cid" "$BASE" >/dev/null || die "docker commit $BASE failed"
docker rm -f "$cid" >/dev/null; trap - EXIT
docker rmi "$BASE-stage1" >/dev/null 2>&1 || true
rm -rf "$CTX"
info "base image $BASE ready"
