#!/usr/bin/env bash
# Stops the cluster scripts/slurm-up.sh started under $FLEXEC_SLURM_DIR (default /tmp/flexec-slurm).
# Idempotent: what does not run is skipped.
#
#   bash scripts/slurm-down.sh           # cancel the cluster's jobs, stop its daemons, keep the logs
#   bash scripts/slurm-down.sh --purge   # the same, then remove the state directory
#
# Only this cluster's daemons are stopped: each by the pid in its pid file, after checking that the
# pid still runs that program with this directory's config.
set -uo pipefail

DIR=${FLEXEC_SLURM_DIR:-/tmp/flexec-slurm}
PURGE=0
case "${1:-}" in
  "") ;;
  --purge) PURGE=1 ;;
  *) echo "usage: slurm-down.sh [--purge]" >&2; exit 2 ;;
esac
say() { echo "slurm-down: $*" >&2; }

[ -d "$DIR" ] || { say "no $DIR: nothing runs"; exit 0; }
export SLURM_CONF=$DIR/etc/slurm.conf

runs() {
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}
stop() {  # PIDFILE WORD NAME
  if ! runs "$1" "$2"; then say "$3: not running"; return 0; fi
  local pid; pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do runs "$1" "$2" || { say "$3 ($pid) stopped"; return 0; }; sleep 0.1; done
  say "$3 ($pid) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
}

# 1. The cluster's jobs, so that no slurmstepd or job process outlives it: the whole cgroup of each
#    SIGKILLed (--batch --signal=KILL), then cancelled (pending ones), then wait until none is listed.
if runs "$DIR/run/slurmctld.pid" slurmctld && command -v squeue >/dev/null 2>&1; then
  ids=$(timeout 10 squeue -h -o %i 2>/dev/null | paste -sd, -)
  if [ -n "$ids" ]; then
    say "cancelling jobs $ids"
    # shellcheck disable=SC2086
    timeout 10 scancel --batch --signal=KILL ${ids//,/ } >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    timeout 10 scancel ${ids//,/ } >/dev/null 2>&1 || true
    for _ in $(seq 150); do [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

# 2. The daemons, in the reverse order of their start.
stop "$DIR/run/slurmd.pid" "slurmd -N localhost" slurmd
stop "$DIR/run/slurmctld.pid" slurmctld slurmctld
stop "$DIR/munge/munged.pid" "$DIR/munge-key/munge.key" munged

left=$(find "$DIR/spool" -maxdepth 1 -type s 2>/dev/null | paste -sd' ' -)
[ -z "$left" ] || say "WARNING: step sockets left in $DIR/spool (a slurmstepd may still run): $left"

if [ "$PURGE" = 1 ]; then
  rm -rf "$DIR"
  # the per-node cgroup directories slurmd made (v1): removed once empty
  for d in /sys/fs/cgroup/*/slurm_localhost; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  say "removed $DIR"
fi
exit 0
