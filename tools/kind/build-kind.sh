#!/usr/bin/env bash
# Build the kind CLI, unmodified, from its Go module: $KIND_CACHE/kind-<ver>/bin/kind
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out="$KIND_CACHE/kind-$KIND_VERSION"
if is_done "$out" && [[ -x "$out/bin/kind" ]]; then info "kind $KIND_VERSION: cached ($out/bin/kind)"; exit 0; fi
need go "Go toolchain; install Go >= 1.24"
rm -rf "$out"; mkdir -p "$out/bin"
info "go install sigs.k8s.io/kind@$KIND_VERSION"
GOBIN="$out/bin" CGO_ENABLED=0 go install -p "$GO_BUILD_P" -trimpath "sigs.k8s.io/kind@$KIND_VERSION" \
  || die "building kind $KIND_VERSION from the Go module proxy failed"
"$out/bin/kind" version >&2
mark_done "$out"
