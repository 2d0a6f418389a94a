#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests
# of tools/slurm_train.sh, tools/slurm_submit.sh and --launcher slurm (`make slurm`; CI runs it
# before `make test`). Installs the packages if needed (as root), writes the Slurm config for
# this host ($SLURM_CONF, default /etc/slurm/slurm.conf), and starts munged, slurmctld and
# slurmd. Two partitions on the one node: `local` (the default) and `urgent`, whose jobs preempt
# `local`'s by requeueing them, as a cluster with preemptible partitions does.
# Idempotent: a cluster that already answers with this config is left alone, one that runs an
# older config of this script is restarted with the current one, and a config this script did
# not write is never overwritten. `start_local_slurm.sh --print-config` prints the config it
# would write, and changes nothing.
set -euo pipefail

log() { printf '[local_slurm] %s\n' "$*"; }

SLURM_CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
export SLURM_CONF  # the daemons and sinfo read the same file
CONF_HEADER="# Written by cvt_mm's tools/ci/start_local_slurm.sh: a one-node cluster for its tests."

cluster() { sinfo -h -o '%P %D %T %C' | paste -sd ';' | sed 's/;/; /g'; }
slurm_answers() { sinfo -h -o '%T' 2>/dev/null | grep -qxE '(idle|mixed|allocated)'; }
# Earlier versions of this script began the file with its ClusterName line.
written_here() {
  [[ "$(head -n 1 "$SLURM_CONF")" == "$CONF_HEADER" ]] ||
    [[ "$(head -n 1 "$SLURM_CONF")" == "ClusterName=cvtmm-local" ]]
}

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEMORY_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
# Processes tracked by their parent pid and no task plugin: no cgroups needed (containers).
# Preemption by partition tier: an `urgent` job that needs the node requeues the `local` jobs
# on it, whose tasks get SIGTERM and have GraceTime seconds to checkpoint before SIGKILL.
CONF="$(cat <<EOF_CONF
${CONF_HEADER}
ClusterName=cvtmm-local
SlurmctldHost=${HOST}
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
ReturnToService=2
MpiDefault=none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEMORY_MB} State=UNKNOWN
PartitionName=local Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES PriorityTier=1 PreemptMode=REQUEUE GraceTime=120
PartitionName=urgent Nodes=${HOST} MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF_CONF
)"
if [[ "${1:-}" == --print-config ]]; then
  printf '%s\n' "$CONF"
  exit 0
fi

restart=0
if slurm_answers; then
  if [[ ! -e "$SLURM_CONF" ]] || ! written_here; then
    log "slurm already up (a cluster of its own config): $(cluster)"
    exit 0
  fi
  if [[ "$(cat "$SLURM_CONF")" == "$CONF" ]]; then
    log "slurm already up: $(cluster)"
    exit 0
  fi
  restart=1
fi
if [[ -e "$SLURM_CONF" ]] && ! written_here; then
  echo "[local_slurm] $SLURM_CONF exists and was not written by this script: leaving it and" \
       "its cluster alone; start that cluster's daemons, or move the file away for a local" \
       "one-node cluster" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  if [[ $restart == 1 ]]; then
    echo "[local_slurm] the local Slurm runs an older config of this script, and restarting" \
         "it with the current one needs root: run 'sudo make slurm'" >&2
  else
    echo "[local_slurm] no Slurm answers here, and starting one needs root (apt-get install" \
         "slurm-wlm, $SLURM_CONF, three daemons): run 'sudo make slurm'" >&2
  fi
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm >/dev/null
fi
if [[ $restart == 1 ]]; then
  log "restarting slurmctld and slurmd with this script's current config"
  scontrol shutdown >/dev/null
  for _ in $(seq 1 30); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
    sleep 1
  done
fi

mkdir -p "$(dirname "$SLURM_CONF")" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
  /run/munge
printf '%s\n' "$CONF" > "$SLURM_CONF"

if [[ ! -s /etc/munge/munge.key ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 30); do
  if slurm_answers; then
    log "slurm up: $(cluster)"
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "[local_slurm] slurm did not come up; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
