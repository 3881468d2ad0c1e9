#!/usr/bin/env bash
# Starts a local Docker engine for flexec's Docker tests (idempotent).
#
# - If the engine at /var/run/docker.sock already answers, does nothing but
#   clean leftovers of earlier test runs.
# - Else installs docker.io from Debian (once) when dockerd is missing, and
#   starts `dockerd --bridge=none --iptables=false --ip-masq=false` in the
#   background (log: $FLEXEC_DOCKERD_LOG, default /tmp/flexec-dockerd.log;
#   pid file: $FLEXEC_DOCKERD_PID, default /tmp/flexec-dockerd.pid).
# - Waits for the socket to answer (deadline $FLEXEC_DOCKERD_TIMEOUT s, default
#   60) and fails loudly otherwise.
#
# Containers never use Docker's default bridge: the engine has none, and
# flexec runs containers with network `none`. No registry is reachable.
set -euo pipefail

SOCK=/var/run/docker.sock
LOG=${FLEXEC_DOCKERD_LOG:-/tmp/flexec-dockerd.log}
PIDFILE=${FLEXEC_DOCKERD_PID:-/tmp/flexec-dockerd.pid}
TIMEOUT=${FLEXEC_DOCKERD_TIMEOUT:-60}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { echo "docker-up: $*" >&2; }

docker_cli() {
  local c
  for c in /usr/bin/docker /usr/local/bin/docker "$(command -v docker 2>/dev/null || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

answers() {
  local cli
  cli=$(docker_cli) || return 1
  "$cli" -H "unix://$SOCK" version >/dev/null 2>&1
}

if answers; then
  say "engine at $SOCK already answers"
  bash "$HERE/docker-clean.sh" || say "WARNING: cleaning leftovers failed"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  say "dockerd missing: installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/tmp/flexec-docker-install.log 2>&1 || {
    say "apt-get install docker.io FAILED; log follows"; cat /tmp/flexec-docker-install.log >&2; exit 1; }
fi
command -v dockerd >/dev/null 2>&1 || { say "FAILED: dockerd still missing after install"; exit 1; }
command -v containerd >/dev/null 2>&1 || say "WARNING: containerd binary not found on PATH"

# A dockerd we started earlier that no longer answers: stop it first.
if [ -f "$PIDFILE" ]; then
  old=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
    say "dockerd $old (from $PIDFILE) does not answer: stopping it"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$old" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
fi
# A stale socket file left by a dead engine would make dockerd refuse to start.
if [ -S "$SOCK" ] && ! answers; then rm -f "$SOCK"; fi

say "starting dockerd (log $LOG)"
# setsid: the engine must outlive this script's process group.
setsid dockerd --bridge=none --iptables=false --ip-masq=false --host "unix://$SOCK" \
  >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
pid=$(cat "$PIDFILE")

deadline=$(( $(date +%s) + TIMEOUT ))
until answers; do
  if ! kill -0 "$pid" 2>/dev/null; then
    say "FAILED: dockerd (pid $pid) exited; last lines of $LOG:"; tail -n 40 "$LOG" >&2; rm -f "$PIDFILE"; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "FAILED: engine did not answer on $SOCK within ${TIMEOUT}s; last lines of $LOG:"; tail -n 40 "$LOG" >&2; exit 1
  fi
  sleep 0.2
done
say "engine answers on $SOCK (dockerd pid $pid, $("$(docker_cli)" version --format '{{.Server.Version}} API {{.Server.APIVersion}}' 2>/dev/null || echo '?'))"
bash "$HERE/docker-clean.sh" || say "WARNING: cleaning leftovers failed"
