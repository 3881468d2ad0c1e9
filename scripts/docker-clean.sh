#!/usr/bin/env bash
# Removes containers left by earlier flexec test runs: those labelled
# `flexec.test-run`, and those whose `flexec.instance` starts with "test-".
# Never touches anything else.
set -euo pipefail
say() { echo "docker-clean: $*" >&2; }
cli=""
for c in /usr/bin/docker /usr/local/bin/docker; do [ -x "$c" ] && { cli=$c; break; }; done
[ -n "$cli" ] || { say "no docker client"; exit 1; }

ids=$("$cli" ps -aq --filter label=flexec.test-run)
ids+=" "$("$cli" ps -a --filter label=flexec.instance --format '{{.ID}} {{.Label "flexec.instance"}}' | awk '$2 ~ /^test-/ {print $1}')
ids=$(echo $ids | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ -n "${ids// /}" ]; then
  say "removing leftover test containers: $ids"
  # shellcheck disable=SC2086
  "$cli" rm -f $ids >/dev/null
fi
