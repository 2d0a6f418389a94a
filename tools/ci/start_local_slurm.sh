#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests
# of tools/slurm_train.sh and --launcher slurm. Installs the packages if needed (as root), writes
# /etc/slurm/slurm.conf for this host, and starts munged, slurmctld and slurmd. Idempotent: a
# cluster that already answers is left alone.
set -euo pipefail

log() { printf '[local_slurm] %s\n' "$*"; }

if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  log "slurm already up: $(sinfo -h -o '%P %D %T')"
  exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "[local_slurm] slurm-wlm is not installed and this is not root: install it with" \
         "'apt-get install slurm-wlm' first" >&2
    exit 1
  fi
  log "installing slurm-wlm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm >/dev/null
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEMORY_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
# Processes tracked by their parent pid and no task plugin: no cgroups needed (containers).
cat > /etc/slurm/slurm.conf <<CONF
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
ReturnToService=2
MpiDefault=none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEMORY_MB} State=UNKNOWN
PartitionName=local Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

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
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    log "slurm up: $(sinfo -h -o '%P %D %T %C')"
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "[local_slurm] slurm did not come up; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
