#!/usr/bin/env bash
# A single-host SLURM for tests and for trying the templates (Debian's slurm-wlm and munge, run as root):
#   cluster/local_slurm.sh start DIR   # munged, slurmctld, slurmd with everything under DIR; prints `export SLURM_CONF=...`
#   cluster/local_slurm.sh stop DIR    # cancels DIR's jobs, stops the three daemons by the pids it recorded
# Nothing outside DIR is touched: munge gets its own key and socket, slurm.conf lives in DIR (clients find it
# through SLURM_CONF), the ports are free ones picked at start. One partition, `debug`, of this host.
set -euo pipefail
action=${1:?usage: local_slurm.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: local_slurm.sh start|stop DIR}" && cd "$2" && pwd)
export SLURM_CONF=$dir/slurm.conf

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  [[ $(id -u) == 0 ]] || { echo "local_slurm.sh: needs root (SlurmUser=root, munged)" >&2; return 2; }
  for daemon in munged slurmctld slurmd; do
    command -v "$daemon" >/dev/null || { echo "local_slurm.sh: $daemon not found (apt-get install slurm-wlm munge)" >&2; return 2; }
  done
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 700 "$dir/munge"
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  munged -F --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed" >>"$dir/munged.log" 2>&1 &
  echo $! >"$dir/munged.pid"
  for _ in $(seq 50); do [[ -S $dir/munge/munge.socket ]] && break; sleep 0.1; done
  munge -S "$dir/munge/munge.socket" -n | unmunge -S "$dir/munge/munge.socket" >/dev/null \
    || { echo "local_slurm.sh: munge does not work (see $dir/munged.log)" >&2; return 1; }

  local host cpus
  host=$(hostname -s)
  cpus=$(nproc); ((cpus >= 4)) || cpus=4   # config_overrides: more CPUs than cores, so 3-rank jobs fit on 2 cores
  # cred_expire: also how long a requeued job waits before it may start again (120 s by default).
  cat >"$SLURM_CONF" <<CONF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pidfile
SlurmdPidFile=$dir/slurmd.pidfile
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld -D -c -f "$SLURM_CONF" >>"$dir/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  slurmd -D -f "$SLURM_CONF" -N "$host" >>"$dir/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"
  for _ in $(seq 300); do
    if [[ $(sinfo -h -o %t 2>/dev/null) == idle ]]; then
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.1
  done
  echo "local_slurm.sh: the node did not become idle in 30 s; sinfo: $(sinfo 2>&1); logs in $dir" >&2
  return 1
}

stop() {
  # Jobs first, so their slurmstepd processes end with them; then the daemons, by the pids recorded at start.
  if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    scancel --full --quiet --partition=debug 2>/dev/null || true
    for _ in $(seq 100); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  local name pid
  for name in slurmd slurmctld munged; do
    [[ -f $dir/$name.pid ]] || continue
    pid=$(cat "$dir/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$dir/$name.pid"
  done
}

case $action in
  start) start ;;
  stop) stop ;;
  *) echo "usage: local_slurm.sh start|stop DIR" >&2; exit 2 ;;
esac
