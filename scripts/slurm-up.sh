#!/usr/bin/env bash
# Starts a private single-host Slurm cluster for flexec's Slurm backend and its tests (idempotent).
#
#   bash scripts/slurm-up.sh                  # install (once), configure, start, probe
#   export SLURM_CONF=$(bash scripts/slurm-up.sh --print-conf)   # where the clients' config is
#   bash scripts/slurm-down.sh [--purge]      # stop (and remove the state directory)
#
# What it makes, all under $FLEXEC_SLURM_DIR (default /tmp/flexec-slurm, keep it short):
# - its own munged (own key, socket and pid file: never the system's /run/munge);
# - slurmctld and `slurmd -N localhost` on loopback (NodeAddr=127.0.0.1), root, no slurmdbd;
# - proctrack/cgroup + task/cgroup (memory limits enforced, the whole job tree killed by
#   `scancel --batch --signal=KILL`, setsid descendants included), select/cons_tres with
#   CR_Core_Memory and DefMemPerCPU, SchedulerParameters=batch_sched_delay=0 (sbatch jobs start
#   within the scheduler's 1 s tick instead of ~3 s), jobcomp/filetxt (a permanent line per
#   finished job: the exit after squeue forgot it), and more CPUs declared than the machine has
#   (SlurmdParameters=config_overrides) so that many small jobs run at once.
#
# cgroups: on a cgroup v1 (or hybrid) host, CgroupPlugin=cgroup/v1. On a pure cgroup v2 host it
# writes CgroupPlugin=cgroup/v2 with IgnoreSystemd=yes (slurmd then needs the cpu, memory and pids
# controllers delegated to its cgroup; this path is not tested on the project's machines, which are
# v1). If slurmd cannot start with cgroups, the script FAILS and says why, unless
# FLEXEC_SLURM_PROCTRACK=linuxproc is set: that cluster has no memory limit and no reliable tree
# kill, and flexec's Slurm backend then declares memoryLimit and oomDetection false.
#
# Re-running it keeps the daemons that run with the current config (same pids), restarts them when
# the config changed (running jobs survive a restart), and starts what is missing. It ends with a
# probe job through sbatch (the first batch job after a slurmctld start waits for a scheduler tick).
#
# Knobs (environment):
#   FLEXEC_SLURM_DIR          state root (default /tmp/flexec-slurm)
#   FLEXEC_SLURM_CPUS         CPUs the node declares (default 16)
#   FLEXEC_SLURM_MEM_MB       RealMemory the node declares (default 16000)
#   FLEXEC_SLURM_DEF_MEM_MB   DefMemPerCPU: a job without --mem gets this much per CPU (default 1024)
#   FLEXEC_SLURM_MIN_JOB_AGE  seconds a finished job's record stays in slurmctld (default 300)
#   FLEXEC_SLURM_KILL_WAIT    seconds between SIGTERM and SIGKILL of Slurm's own kills (default 5)
#   FLEXEC_SLURM_PORT         slurmctld's port, slurmd takes the next one (default 6817)
#   FLEXEC_SLURM_PROCTRACK    cgroup (default) | linuxproc
#   FLEXEC_SLURM_TIMEOUT      seconds to wait for each daemon and the probe (default 60)
set -euo pipefail

DIR=${FLEXEC_SLURM_DIR:-/tmp/flexec-slurm}
CPUS=${FLEXEC_SLURM_CPUS:-16}
MEM_MB=${FLEXEC_SLURM_MEM_MB:-16000}
DEF_MEM_MB=${FLEXEC_SLURM_DEF_MEM_MB:-1024}
MIN_JOB_AGE=${FLEXEC_SLURM_MIN_JOB_AGE:-300}
KILL_WAIT=${FLEXEC_SLURM_KILL_WAIT:-5}
PORT=${FLEXEC_SLURM_PORT:-6817}
PROCTRACK=${FLEXEC_SLURM_PROCTRACK:-cgroup}
TIMEOUT=${FLEXEC_SLURM_TIMEOUT:-60}
CONF="$DIR/etc/slurm.conf"

say() { echo "slurm-up: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if [ "${1:-}" = --print-conf ]; then echo "$CONF"; exit 0; fi

[ "$(id -u)" = 0 ] || fail "must run as root (slurmd starts jobs as their users and manages cgroups)"
case "$DIR" in /*) ;; *) fail "FLEXEC_SLURM_DIR must be an absolute path, not '$DIR'" ;; esac
case "$PROCTRACK" in cgroup|linuxproc) ;; *) fail "FLEXEC_SLURM_PROCTRACK must be cgroup or linuxproc, not '$PROCTRACK'" ;; esac
for n in CPUS MEM_MB DEF_MEM_MB MIN_JOB_AGE KILL_WAIT PORT TIMEOUT; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail "FLEXEC_SLURM_$n must be a whole number, not '${!n}'"
done

# ---- packages: Debian's slurm-wlm (slurmctld, slurmd, slurm-client) and munge ------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in munge slurmctld slurmd slurm-client; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from Debian (slurm-wlm's parts, without recommends)"
  apt_log=$(mktemp /tmp/flexec-slurm-apt-XXXXXX.log)
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the packages' own services (system munge, slurmctld) must not start
  policy=/usr/sbin/policy-rc.d; had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; }
  ok=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1 || {
    apt-get update -qq >>"$apt_log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1 || ok=0
  }
  [ "$had_policy" = 1 ] || rm -f "$policy"
  [ "$ok" = 1 ] || { tail -n 30 "$apt_log" >&2; fail "apt-get install ${missing[*]} failed (log $apt_log)"; }
fi
for c in munged munge unmunge slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is missing after the install"
done

# ---- layout -----------------------------------------------------------------------------------
mkdir -p "$DIR"/{etc,state,spool,log,run,munge,munge-key}
# munged refuses a socket directory that others cannot search; the key and slurmctld's state
# (each job's environment, tokens included, until its record is purged) are root's only
chmod 755 "$DIR" "$DIR/munge" "$DIR/etc"
chmod 700 "$DIR/munge-key" "$DIR/state" "$DIR/spool"
if [ ! -s "$DIR/munge-key/munge.key" ]; then
  (umask 077 && dd if=/dev/urandom of="$DIR/munge-key/munge.key" bs=1024 count=1 status=none)
  chmod 400 "$DIR/munge-key/munge.key"
fi

# ---- cgroups ------------------------------------------------------------------------------------
cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo none)
cgroup_plugin=""
if [ "$PROCTRACK" = cgroup ]; then
  if [ "$cgroup_fs" = cgroup2fs ]; then
    cgroup_plugin=cgroup/v2
    say "cgroup v2 host: using cgroup/v2 with IgnoreSystemd=yes (untested here; slurmd needs the cpu, memory and pids controllers)"
  else
    for c in memory freezer; do
      [ -d "/sys/fs/cgroup/$c" ] || fail "cgroup v1 controller $c is not mounted at /sys/fs/cgroup/$c (set FLEXEC_SLURM_PROCTRACK=linuxproc for a cluster without memory limits)"
    done
    cgroup_plugin=cgroup/v1
  fi
fi

# ---- config -----------------------------------------------------------------------------------
if [ "$PROCTRACK" = cgroup ]; then
  proctrack=proctrack/cgroup task=task/cgroup gather=jobacct_gather/cgroup
else
  proctrack=proctrack/linuxproc task=task/none gather=jobacct_gather/linux
fi
new_conf=$(mktemp "$DIR/etc/.slurm.conf.XXXXXX")
new_cgroup=$(mktemp "$DIR/etc/.cgroup.conf.XXXXXX")
cat >"$new_conf" <<EOF
# Written by flexec's scripts/slurm-up.sh: a private single-host cluster on loopback.
ClusterName=flexec
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=$proctrack
TaskPlugin=$task
JobAcctGatherType=$gather
AccountingStorageType=accounting_storage/none
# No slurmdbd (sacct does not work): every finished job gets a line here, for good.
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default every job would take the node's whole memory: one job at a time.
DefMemPerCPU=$DEF_MEM_MB
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
# Lets the node declare more CPUs than the machine has (many small jobs at once).
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
KillWait=$KILL_WAIT
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
{
  echo "# Written by flexec's scripts/slurm-up.sh."
  echo "CgroupPlugin=${cgroup_plugin:-autodetect}"
  echo "CgroupMountpoint=/sys/fs/cgroup"
  [ "$cgroup_plugin" = cgroup/v2 ] && echo "IgnoreSystemd=yes"
  echo "ConstrainCores=no"
  echo "ConstrainRAMSpace=yes"
  echo "ConstrainSwapSpace=no"
  echo "ConstrainDevices=no"
} >"$new_cgroup"
changed=0
for pair in "$new_conf:slurm.conf" "$new_cgroup:cgroup.conf"; do
  src=${pair%%:*}; dst="$DIR/etc/${pair##*:}"
  if cmp -s "$src" "$dst"; then rm -f "$src"; else chmod 644 "$src"; mv -f "$src" "$dst"; changed=1; fi
done
cat >"$DIR/env.sh" <<EOF
# . this file to use the cluster's clients (sbatch, squeue, scancel, scontrol, sinfo)
export SLURM_CONF=$CONF
EOF
export SLURM_CONF=$CONF

# ---- processes ----------------------------------------------------------------------------------
# runs PIDFILE WORD: the pid in PIDFILE is alive (not a zombie) and its command line has WORD
# (a pid file left by a dead daemon may name a pid reused by something else)
runs() {
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}
# stop PIDFILE WORD NAME: SIGTERM, then SIGKILL after 10 s
stop() {
  runs "$1" "$2" || return 0
  local pid; pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do runs "$1" "$2" || return 0; sleep 0.1; done
  say "$3 ($pid) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
}
# until_ok SECONDS WHAT COMMAND...: retries the command every 0.2 s
until_ok() {
  local seconds=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { say "no $what within ${seconds}s"; return 1; }
    sleep 0.2
  done
}

# munged: its own key and socket
if ! runs "$DIR/munge/munged.pid" "$DIR/munge-key/munge.key"; then
  rm -f "$DIR/munge/munge.sock" "$DIR/munge/munge.sock.lock" "$DIR/munge/munged.pid"
  munged --key-file="$DIR/munge-key/munge.key" --socket="$DIR/munge/munge.sock" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge-key/munged.seed" \
    || { tail -n 20 "$DIR/log/munged.log" >&2 || true; fail "munged did not start (log $DIR/log/munged.log)"; }
  until_ok 10 "munge socket" test -S "$DIR/munge/munge.sock" || fail "munged made no socket (log $DIR/log/munged.log)"
  say "munged started (pid $(cat "$DIR/munge/munged.pid"))"
fi
munge -S "$DIR/munge/munge.sock" -n | unmunge -S "$DIR/munge/munge.sock" >/dev/null \
  || fail "a munge credential does not round-trip through $DIR/munge/munge.sock"

if [ "$changed" = 1 ] && { runs "$DIR/run/slurmctld.pid" slurmctld || runs "$DIR/run/slurmd.pid" "slurmd -N localhost"; }; then
  say "the config changed: restarting slurmd and slurmctld (running jobs survive)"
  stop "$DIR/run/slurmd.pid" "slurmd -N localhost" slurmd
  stop "$DIR/run/slurmctld.pid" slurmctld slurmctld
fi

if ! runs "$DIR/run/slurmctld.pid" slurmctld; then
  slurmctld || { tail -n 20 "$DIR/log/slurmctld.log" >&2 || true; fail "slurmctld did not start (log $DIR/log/slurmctld.log)"; }
  say "slurmctld started (pid $(cat "$DIR/run/slurmctld.pid" 2>/dev/null || echo '?'))"
fi
until_ok "$TIMEOUT" "answer from slurmctld (scontrol ping)" scontrol ping \
  || { tail -n 20 "$DIR/log/slurmctld.log" >&2 || true; fail "slurmctld does not answer (log $DIR/log/slurmctld.log)"; }

if ! runs "$DIR/run/slurmd.pid" "slurmd -N localhost"; then
  slurmd -N localhost || true
  if ! until_ok 10 "slurmd pid" runs "$DIR/run/slurmd.pid" "slurmd -N localhost"; then
    tail -n 20 "$DIR/log/slurmd.log" >&2 || true
    [ "$PROCTRACK" = cgroup ] && say "slurmd failed with $proctrack ($cgroup_plugin); FLEXEC_SLURM_PROCTRACK=linuxproc starts a cluster without memory limits or a reliable tree kill"
    fail "slurmd did not start (log $DIR/log/slurmd.log)"
  fi
  say "slurmd started (pid $(cat "$DIR/run/slurmd.pid"))"
fi

# ---- the node, then a batch job end to end ------------------------------------------------------
node_ready() {
  local state
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|allocated*|completing*) return 0 ;;
    down*|drain*|fail*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
  esac
}
until_ok "$TIMEOUT" "ready node (sinfo)" node_ready \
  || { tail -n 20 "$DIR/log/slurmd.log" >&2 || true; fail "node localhost is not ready: $(sinfo -h -n localhost -o '%T %E' 2>&1) (log $DIR/log/slurmd.log)"; }
timeout "$TIMEOUT" sbatch --wait --quiet -J slurm-up-probe -o /dev/null --export=NONE --mem=16 --wrap /bin/true \
  || fail "a probe job through sbatch did not complete within ${TIMEOUT}s (logs in $DIR/log)"

say "ready: node localhost $(sinfo -h -n localhost -o %T), $proctrack${cgroup_plugin:+ ($cgroup_plugin)}, $CPUS CPUs, ${MEM_MB} MB"
say "pids: munged $(cat "$DIR/munge/munged.pid"), slurmctld $(cat "$DIR/run/slurmctld.pid"), slurmd $(cat "$DIR/run/slurmd.pid")"
say "SLURM_CONF=$CONF   (or: . $DIR/env.sh)"
