#!/usr/bin/env bash
# Start a Docker engine usable by kind, idempotently.
#
#  * installs Debian's docker.io (and runc) with apt-get when dockerd is missing
#  * data root under $AIRSIDE_CACHE/docker (default /var/cache/airside/docker)
#  * registers tools/docker/airside-runc (drops capabilities missing from the
#    bounding set, so --privileged works in reduced-capability sandboxes) as
#    the default runtime
#  * listens on the default socket /var/run/docker.sock
#
# If a docker engine is already answering, nothing is changed (a warning is
# printed when it does not use the airside runtime).
set -euo pipefail

AIRSIDE_CACHE="${AIRSIDE_CACHE:-/var/cache/airside}"
DOCKER_DIR="$AIRSIDE_CACHE/docker"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

privileged_ok() {
  docker run --rm --privileged --network none --entrypoint /bin/true "$1" >/dev/null 2>&1
}

if docker info >/dev/null 2>&1; then
  rt="$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)"
  log "docker engine already running (default runtime: ${rt:-?})"
  [[ "$rt" == airside-runc ]] || log "note: not using airside-runc; --privileged may fail if capabilities are missing"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "dockerd-up.sh must run as root to start dockerd"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "dockerd not installed and apt-get unavailable: install docker.io"
  log "installing Debian docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -qq --no-install-recommends docker.io runc containerd iptables ca-certificates >/dev/null \
    || die "apt-get install docker.io failed"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is required by the airside-runc wrapper"

mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/bin" /etc/docker
install -m 0755 "$HERE/airside-runc" "$DOCKER_DIR/bin/airside-runc"

# daemon.json: merge our keys into whatever is there
python3 - "$DOCKER_DIR" <<'PY'
import json, os, sys
d = sys.argv[1]
path = "/etc/docker/daemon.json"
try:
    cfg = json.load(open(path))
except (OSError, ValueError):
    cfg = {}
cfg["data-root"] = os.path.join(d, "data")
cfg.setdefault("runtimes", {})["airside-runc"] = {"path": os.path.join(d, "bin", "airside-runc")}
cfg["default-runtime"] = "airside-runc"
cfg.setdefault("log-driver", "json-file")
cfg.setdefault("log-opts", {"max-size": "20m", "max-file": "2"})
json.dump(cfg, open(path, "w"), indent=2)
PY

# the kubelet (inside kind nodes) writes these sysctls if they differ; set them
# on the host so it never needs to (writes can fail in a sandbox).
for kv in vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
          kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000 \
          net.ipv4.ip_forward=1 fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512; do
  sysctl -qw "$kv" 2>/dev/null || log "note: could not set sysctl $kv"
done

# stale pid file from a dead daemon blocks startup
if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
log "starting dockerd (data root $DOCKER_DIR/data, log $DOCKER_DIR/dockerd.log)"
setsid nohup dockerd >>"$DOCKER_DIR/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && break
  sleep 1
done
docker info >/dev/null 2>&1 || { tail -20 "$DOCKER_DIR/dockerd.log" >&2; die "dockerd did not come up (see $DOCKER_DIR/dockerd.log)"; }
log "docker engine ready: $(docker version --format 'server {{.Server.Version}}') runtime $(docker info --format '{{.DefaultRuntime}}')"
