#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm + munge) on loopback, in a directory of its
# own, for the tests: no systemd, no system files touched.
#   local_cluster.sh start DIR   starts munged, slurmctld, slurmd; prints "export SLURM_CONF=..."
#   local_cluster.sh stop DIR    stops them (always safe to call)
set -euo pipefail
action=${1:?usage: local_cluster.sh start|stop DIR}
dir=${2:?usage: local_cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
host=$(hostname -s)

stop_all() {
  for name in slurmd slurmctld munged; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    fi
  done
  sleep 1
  for name in slurmd slurmctld munged; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
}

if [ "$action" = stop ]; then
  stop_all
  exit 0
fi
[ "$action" = start ] || { echo "local_cluster.sh: unknown action $action" >&2; exit 2; }

for tool in munged mungekey slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "local_cluster.sh: $tool not found (launcher/setup.sh installs slurm-wlm and munge)" >&2; exit 1; }
done
mkdir -p "$dir"/{state,spool,log,munge}
chmod 700 "$dir/munge"

# munge: its own key, socket and pid under DIR.
key=$dir/munge/munge.key
[ -f "$key" ] || mungekey -c -k "$key" 2>/dev/null || dd if=/dev/urandom of="$key" bs=1024 count=1 2>/dev/null
chmod 400 "$key"
socket=$dir/munge/munge.socket
munged --force --key-file="$key" --socket="$socket" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"

cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat > "$conf" <<CONF
ClusterName=bnecktest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${BNECK_SLURMCTLD_PORT:-16817}
SlurmdPort=${BNECK_SLURMD_PORT:-16818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=20
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

export SLURM_CONF=$conf
slurmctld -c -f "$conf"
slurmd -c -f "$conf"
# Wait until the node is idle, so the first sbatch does not sit pending.
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1 || true)
  case "$state" in idle*|mix*|alloc*) echo "export SLURM_CONF=$conf"; exit 0 ;; esac
  sleep 1
done
echo "local_cluster.sh: the node did not become idle; see $dir/log" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
stop_all
exit 1
