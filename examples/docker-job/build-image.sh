#!/usr/bin/env bash
# Builds the hello job's image (default tag flexec-hello:example) from this
# folder's Dockerfile, with the worker runtime of the built packages/core.
# No registry: FROM flexec-node:base, which `bash scripts/build-test-image.sh`
# imports from the host's node. Usage: bash examples/docker-job/build-image.sh [tag]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CORE=${FLEXEC_CORE_DIR:-$HERE/../../packages/core}
TAG=${1:-flexec-hello:example}
[ -d "$CORE/dist" ] || { echo "build-image: $CORE/dist is missing: run npm run build first" >&2; exit 1; }
ctx=$(mktemp -d /tmp/flexec-hello-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/core"
cp "$HERE/Dockerfile" "$ctx/Dockerfile"
cp "$CORE/package.json" "$ctx/core/package.json"
cp -r "$CORE/dist" "$ctx/core/dist"
DOCKER_BUILDKIT=0 docker build --network none -q -t "$TAG" "$ctx" >/dev/null
echo "built $TAG"
