#!/usr/bin/env bash
# A single-node Slurm on this host for tests/test_slurm.py and the Slurm part of
# `python -m bench.gpu`: installs slurm-wlm and munge (Debian) if missing, writes a
# minimal slurm.conf (this host as the one node, with its real CPUs and memory, and a
# partition `debug`), makes a munge key, and starts munged, slurmctld and slurmd.
# Idempotent: a Slurm already up is left as it is. Exits non-zero, saying why, when it
# cannot start (the tests then skip with that reason).
set -uo pipefail

fail() { echo "setup-slurm: $*" >&2; exit 1; }
up() {
  scontrol ping 2>/dev/null | grep -q "is UP" &&
    sinfo -h -p debug -o "%t" 2>/dev/null | grep -Eq "^(idle|mix|alloc|comp)"
}

if command -v scontrol >/dev/null 2>&1 && up; then
  echo "setup-slurm: Slurm is up"; exit 0
fi
[ "$(id -u)" -eq 0 ] || fail "needs root (apt-get, daemons)"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
   || ! command -v munged >/dev/null 2>&1; then
  echo "setup-slurm: installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || fail "apt-get install slurm-wlm munge failed"
fi

HOST=$(hostname -s)
mkdir -p /etc/slurm /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
  /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none || fail "no munge key"
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force \
    || fail "munged did not start"
fi

# The node as slurmd sees it (CPUs, sockets, memory), so the node is never drained for
# a mismatch.
NODE=$(slurmd -C 2>/dev/null | head -n 1)
[ -n "$NODE" ] || NODE="NodeName=$HOST CPUs=$(nproc)"
cat > /etc/slurm/slurm.conf <<CONF
# Written by .ci/setup-slurm.sh: a single-node cluster for the course bot's tests.
ClusterName=coursebot
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=10
MinJobAge=300
SlurmdTimeout=60
$NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld -i 2>/dev/null || slurmctld \
  || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"

for _ in $(seq 1 30); do
  if up; then echo "setup-slurm: Slurm is up ($HOST, partition debug)"; exit 0; fi
  state=$(sinfo -h -p debug -o "%t" 2>/dev/null || true)
  case "$state" in
    drain*|down*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
fail "Slurm did not come up: $(sinfo 2>&1 | tail -n 2 | tr '\n' ' ')"
