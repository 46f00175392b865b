#!/usr/bin/env bash
# `make test-slurm`: a real single-node Slurm in a temporary folder (no munge, no database),
# the Slurm tests against it, then both daemons stopped by their process ids.
# Usage: Tests/Slurm/cluster.sh SWIFT
set -euo pipefail
SWIFT=${1:-swift}
D=$(mktemp -d /tmp/lth-slurm.XXXXXX)
mkdir -p "$D/state" "$D/spool"
PORT=$(( 20000 + RANDOM % 20000 ))
cat > "$D/slurm.conf" <<CONF
ClusterName=lth-test
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
DependencyParameters=kill_invalid_depend
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ReturnToService=2
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
NodeName=localhost CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -D -i >"$D/ctld.out" 2>&1 &
CTLD=$!
slurmd -D -N localhost >"$D/slurmd.out" 2>&1 &
SLURMD=$!
trap 'kill $SLURMD $CTLD 2>/dev/null; wait $SLURMD $CTLD 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.5
done
sinfo -h -o %t | grep -q idle || { echo "slurm did not come up; logs in $D"; tail -20 "$D"/*.out; exit 1; }
echo "single-node Slurm up in $D (port $PORT)"
SWIFT_BACKTRACE=enable=no LTH_SLURM=1 $SWIFT test -c release --skip-build --filter SlurmTests
