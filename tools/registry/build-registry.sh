#!/usr/bin/env bash
# Build the OCI registry the tests push images into (distribution/distribution v3, "registry"), from the
# Go module proxy, cached under $AIRSIDE_CACHE/registry/<version>/bin/registry. Prints the binary's path.
set -euo pipefail
VERSION="${REGISTRY_VERSION:-v3.0.0}"
CACHE="${AIRSIDE_CACHE:-/var/cache/airside}/registry/$VERSION"
if [[ -x "$CACHE/bin/registry" ]]; then echo "$CACHE/bin/registry"; exit 0; fi
command -v go >/dev/null || { echo "build-registry: needs the Go toolchain" >&2; exit 1; }
rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp/bin"
GOBIN="$CACHE.tmp/bin" CGO_ENABLED=0 go install -p "${AIRSIDE_GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" \
  "github.com/distribution/distribution/v3/cmd/registry@$VERSION" >&2
rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
echo "$CACHE/bin/registry"
