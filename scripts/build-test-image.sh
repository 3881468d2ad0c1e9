#!/usr/bin/env bash
# Builds the local test image `flexec-node:test` (no registry needed):
#
# 1. `flexec-node:base`: `docker import` of a tiny rootfs holding the host's
#    node binary and the shared libraries it links (ldd), /tmp with mode 1777
#    (an imported /tmp is 0755 otherwise, and a tmpfs on /tmp copies that mode),
#    and /etc/passwd + /etc/group with a non-root user `flexec` (uid:gid
#    $FLEXEC_TEST_UID:$FLEXEC_TEST_GID, default 1000:1000) used by the tests.
# 2. `flexec-node:test`: `docker build` (classic builder, --network none) FROM the
#    base adding the flexec worker runtime at /opt/flexec/node_modules/@flexec/core
#    (dist/ and package.json of packages/core). When packages/core/dist does not
#    exist yet this layer is skipped (a warning says so) and :test is the base.
#
# Idempotent: an image is rebuilt only when it is missing or its inputs changed
# (label flexec.inputs holds a hash of them). FORCE=1 rebuilds anyway.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${FLEXEC_BASE_IMAGE:-flexec-node:base}
IMAGE=${FLEXEC_TEST_IMAGE:-flexec-node:test}
TUID=${FLEXEC_TEST_UID:-1000}
TGID=${FLEXEC_TEST_GID:-1000}
FORCE=${FORCE:-0}
say() { echo "build-test-image: $*" >&2; }

DOCKER=""
for c in /usr/bin/docker /usr/local/bin/docker; do
  if [ -x "$c" ] && "$c" version >/dev/null 2>&1; then DOCKER=$c; break; fi
done
[ -n "$DOCKER" ] || { say "FAILED: no Docker engine answers (run: bash scripts/docker-up.sh)"; exit 1; }

label_of() { "$DOCKER" image inspect --format '{{ index .Config.Labels "flexec.inputs" }}' "$1" 2>/dev/null || true; }

NODE=$(readlink -f "$(command -v node)")
LIBS=$(ldd "$NODE" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\// {print $1}' | sort -u)

# ---- 1. the imported base ---------------------------------------------------
base_inputs=$( { echo "v1 $TUID $TGID"; sha256sum "$NODE"; for l in $LIBS; do sha256sum "$(readlink -f "$l")"; done; } | sha256sum | cut -c1-16)
if [ "$FORCE" = 1 ] || [ "$(label_of "$BASE")" != "$base_inputs" ]; then
  say "importing $BASE from $NODE ($("$NODE" --version))"
  tmp=$(mktemp -d /tmp/flexec-rootfs.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  rootfs=$tmp/rootfs
  mkdir -p "$rootfs"/{usr/local/bin,usr/bin,etc,tmp,var/tmp,run,home/flexec,opt/flexec/node_modules,proc,sys,dev}
  cp -L "$NODE" "$rootfs/usr/local/bin/node"
  ln -s ../local/bin/node "$rootfs/usr/bin/node"
  for l in $LIBS; do
    mkdir -p "$rootfs$(dirname "$l")"
    cp -L "$l" "$rootfs$l"
  done
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  printf 'root:x:0:0:root:/root:/bin/false\nflexec:x:%s:%s:flexec test user:/home/flexec:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' "$TUID" "$TGID" >"$rootfs/etc/passwd"
  printf 'root:x:0:\nflexec:x:%s:\nnogroup:x:65534:\n' "$TGID" >"$rootfs/etc/group"
  chown "$TUID:$TGID" "$rootfs/home/flexec"
  tar -C "$rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'WORKDIR /' \
    --change "LABEL flexec.inputs=$base_inputs" \
    --change 'CMD ["node"]' \
    "$tmp/rootfs.tar" "$BASE" >/dev/null
  rm -rf "$tmp"; trap - EXIT
else
  say "$BASE is up to date"
fi

# ---- 2. the worker runtime layer -------------------------------------------
CORE=${FLEXEC_CORE_DIR:-$ROOT/packages/core}
if [ ! -d "$CORE/dist" ]; then
  say "WARNING: $CORE/dist does not exist (build @flexec/core first): $IMAGE is $BASE without the worker runtime"
  "$DOCKER" tag "$BASE" "$IMAGE"
  exit 0
fi
rt_inputs=$( { echo "v1 $base_inputs"; cd "$CORE" && find dist package.json -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
if [ "$FORCE" != 1 ] && [ "$(label_of "$IMAGE")" = "$rt_inputs" ]; then
  say "$IMAGE is up to date"
  exit 0
fi
say "building $IMAGE FROM $BASE with the worker runtime from $CORE/dist"
ctx=$(mktemp -d /tmp/flexec-imgctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/core"
cp -r "$CORE/dist" "$ctx/core/dist"
cp "$CORE/package.json" "$ctx/core/package.json"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY core/package.json /opt/flexec/node_modules/@flexec/core/package.json
COPY core/dist /opt/flexec/node_modules/@flexec/core/dist
ENV NODE_PATH=/opt/flexec/node_modules
LABEL flexec.inputs=$rt_inputs
DOCKERFILE
DOCKER_BUILDKIT=0 "$DOCKER" build --network none -q -t "$IMAGE" "$ctx" >/dev/null
say "built $IMAGE"
