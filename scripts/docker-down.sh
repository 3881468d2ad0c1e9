#!/usr/bin/env bash
# Stops the dockerd that scripts/docker-up.sh started (its pid file), and only it.
# An engine started some other way is left alone.
set -euo pipefail
PIDFILE=${FLEXEC_DOCKERD_PID:-/tmp/flexec-dockerd.pid}
TIMEOUT=${FLEXEC_DOCKERD_TIMEOUT:-30}
say() { echo "docker-down: $*" >&2; }

if [ ! -f "$PIDFILE" ]; then say "no pid file $PIDFILE: nothing started by docker-up.sh"; exit 0; fi
pid=$(cat "$PIDFILE")
if ! kill -0 "$pid" 2>/dev/null; then say "dockerd $pid is not running"; rm -f "$PIDFILE"; exit 0; fi
case "$(cat "/proc/$pid/comm" 2>/dev/null || true)" in
  dockerd) ;;
  *) say "pid $pid is not dockerd: leaving it alone"; rm -f "$PIDFILE"; exit 0 ;;
esac
say "stopping dockerd $pid"
kill -TERM "$pid"
deadline=$(( $(date +%s) + TIMEOUT ))
while kill -0 "$pid" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then say "dockerd $pid still alive after ${TIMEOUT}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; break; fi
  sleep 0.2
done
rm -f "$PIDFILE"
say "stopped"
