# Sourced by the batch templates (cluster/templates/*.sbatch). Bash runs no trap while a foreground command
# runs, and SLURM's `--signal=B:USR1@N` and `scancel --signal=USR1 --batch` reach only the batch shell: so the
# launcher (srun or mpirun) starts in the background, the shell waits for it, and its traps forward USR1 (the
# time-limit warning: the study drains) and TERM (preemption: in-flight units are requeued) to the launcher,
# which passes them to every rank.

# memsweep_launch MEMSWEEP STORE REQUEUE_ON_DRAIN LAUNCHER...
#   Runs LAUNCHER... (e.g. `srun memsweep run ...`), forwarding signals; returns its exit status. After a
#   drain (USR1) that left units unfinished, and when REQUEUE_ON_DRAIN is 1, requeues this job with
#   `scontrol requeue` so the study continues in the next allocation from its store.
memsweep_launch() {
  local memsweep=$1 store=$2 requeue_on_drain=$3
  shift 3
  local drained=0 launcher="" status
  echo "memsweep_launch: $(date '+%F %T') job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-$(hostname)}: $*"
  # Traps first: bash's default for USR1 is to exit, and USR1 may come early when --time is short.
  trap 'drained=1; echo "memsweep_launch: $(date "+%F %T") USR1: draining"; [[ -n $launcher ]] && kill -USR1 "$launcher" 2>/dev/null' USR1
  trap 'echo "memsweep_launch: $(date "+%F %T") TERM: requeueing in-flight units"; [[ -n $launcher ]] && kill -TERM "$launcher" 2>/dev/null' TERM
  if [[ $drained == 1 ]]; then  # USR1 before the launcher started (--time shorter than the USR1 lead): nothing runs
    echo "memsweep_launch: USR1 before the start: not starting (is --time longer than the USR1 lead?)"
    status=0
  else
    # Its own session (setsid execs in place: $! is the launcher), so mpirun's ranks can be waited for after it exits.
    setsid "$@" &
    launcher=$!
    # A trapped signal ends `wait` early with 128+signal while the launcher runs on: wait again. Bash keeps the
    # status of a reaped background job, so the last `wait` returns the launcher's own.
    while kill -0 "$launcher" 2>/dev/null; do wait "$launcher"; done
    wait "$launcher"; status=$?
    # mpirun may exit on SIGTERM before its ranks have committed, and SLURM SIGKILLs what is left of the step
    # when this shell exits: wait (at most 60 s; KillWait bounds it anyway) until the launcher's session is empty.
    for _ in $(seq 600); do pgrep -s "$launcher" >/dev/null || break; sleep 0.1; done
  fi
  trap - USR1 TERM
  echo "memsweep_launch: $(date '+%F %T') launcher exited with status $status"
  if [[ $drained == 1 && $status == 0 && $requeue_on_drain == 1 && -n ${SLURM_JOB_ID:-} ]]; then
    if ! "$memsweep" status "$store" --exit-unfinished >/dev/null; then
      echo "memsweep_launch: units remain: requeueing job $SLURM_JOB_ID"
      scontrol requeue "$SLURM_JOB_ID"
    fi
  fi
  return $status
}

# memsweep_scratch_options DIR EVERY
#   `run`'s scratch options for DIR as this node expands it (DIR arrives unexpanded, e.g. '$SLURM_TMPDIR'): on a
#   cluster where it is unset or empty, a warning and no options (the live store stays at the shared path) instead
#   of the batch script dying under `set -u`.
memsweep_scratch_options() {
  local dir
  dir=$(set +u; eval "printf '%s' \"$1\"")
  if [[ -z $dir ]]; then
    echo "memsweep_launch: warning: --scratch '$1' is empty on $(hostname): the store stays at its shared path" >&2
    return 0
  fi
  printf -- '--scratch %q --checkpoint-every %s' "$dir" "$2"
}
