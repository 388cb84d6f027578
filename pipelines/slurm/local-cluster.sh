#!/usr/bin/env bash
# A one-node SLURM on this machine (for trying featx's cluster commands and for its tests).
# Needs root and Debian's slurm-wlm + munge (`apt-get install -y slurm-wlm munge`).
#   bash pipelines/slurm/local-cluster.sh start   # idempotent; prints the slurm.conf used
#   bash pipelines/slurm/local-cluster.sh stop
set -euo pipefail
STATE=${FEATX_SLURM_STATE:-/var/tmp/featx-slurm}
CONF=/etc/slurm/slurm.conf
cmd=${1:-start}

if [ "$cmd" = stop ]; then
  pkill -x slurmd || true; pkill -x slurmctld || true
  exit 0
fi

for exe in munged slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || { echo "local-cluster: $exe not found; apt-get install -y slurm-wlm munge" >&2; exit 3; }
done
mkdir -p "$STATE"/{ctld,d,log} /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || (munged --force 2>/dev/null || su -s /bin/sh munge -c "munged --force")

host=$(hostname -s)
cat > "$CONF" <<CONF
ClusterName=featx-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 512 )) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "local-cluster: up ($CONF)"; exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "local-cluster: the node did not come up; see $STATE/log/" >&2
exit 4
