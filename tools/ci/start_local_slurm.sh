#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for the tests
# of tools/slurm_train.sh and --launcher slurm (`make slurm`; CI runs it before `make test`).
# Installs the packages if needed (as root), writes the Slurm config for this host
# ($SLURM_CONF, default /etc/slurm/slurm.conf), and starts munged, slurmctld and slurmd.
# Idempotent: a cluster that already answers is left alone, and a config this script did not
# write is never overwritten.
set -euo pipefail

log() { printf '[local_slurm] %s\n' "$*"; }

SLURM_CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
export SLURM_CONF  # the daemons and sinfo read the same file
CONF_HEADER="# Written by cvt_mm's tools/ci/start_local_slurm.sh: a one-node cluster for its tests."

if sinfo -h -o '%T' 2>/dev/null | grep -qxE '(idle|mixed|allocated)'; then
  log "slurm already up: $(sinfo -h -o '%P %D %T')"
  exit 0
fi
# Earlier versions of this script began the file with its ClusterName line.
if [[ -e "$SLURM_CONF" ]] && [[ "$(head -n 1 "$SLURM_CONF")" != "$CONF_HEADER" ]] &&
   [[ "$(head -n 1 "$SLURM_CONF")" != "ClusterName=cvtmm-local" ]]; then
  echo "[local_slurm] $SLURM_CONF exists and was not written by this script: leaving it and" \
       "its cluster alone; start that cluster's daemons, or move the file away for a local" \
       "one-node cluster" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "[local_slurm] no Slurm answers here, and starting one needs root (apt-get install" \
       "slurm-wlm, $SLURM_CONF, three daemons): run 'sudo make slurm'" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm >/dev/null
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEMORY_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
mkdir -p "$(dirname "$SLURM_CONF")" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
  /run/munge
# Processes tracked by their parent pid and no task plugin: no cgroups needed (containers).
cat > "$SLURM_CONF" <<CONF
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
  if sinfo -h -o '%T' 2>/dev/null | grep -qxE '(idle|mixed|allocated)'; then
    log "slurm up: $(sinfo -h -o '%P %D %T %C')"
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "[local_slurm] slurm did not come up; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
