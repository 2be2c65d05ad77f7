#pragma once
// SIGTERM (SLURM's preemption notice; SIGKILL follows ~30 s later) and SIGUSR1 (a warning ahead of the time
// limit, e.g. sbatch --signal=USR1@600) become requests rank 0's coordinator polls. Workers install the same
// handlers: a worker that sees SIGTERM itself (srun and mpirun pass it to every rank) abandons its unit at the
// next batch; SIGUSR1 it leaves to rank 0, which cancels what has not finished when the grace period ends.
#include "orchestrator/scheduler/coordinator.h"

namespace memsweep {

void install_stop_signal_handlers();
// The strongest request since the last call (terminate over drain), then cleared.
StopRequest take_stop_request();
// Whether SIGTERM (or SIGINT, which does the same) was seen at any time (not cleared by take_stop_request).
bool terminate_signalled();
// Whether it was SIGINT (Ctrl-C): `run` then exits 130, as a shell expects of an interrupted command.
bool interrupt_signalled();
// Whether SIGUSR1 was seen more than grace_s seconds ago (not cleared by take_stop_request).
bool drain_grace_passed(double grace_s);

}  // namespace memsweep
