#pragma once
// SIGTERM (SLURM's preemption notice; SIGKILL follows ~30 s later) and SIGUSR1 (a warning ahead of the time
// limit, e.g. sbatch --signal=USR1@600) become requests rank 0's coordinator polls. Workers install the same
// handlers and ignore the requests: rank 0 decides, and tells them to stop.
#include "orchestrator/scheduler/coordinator.h"

namespace memsweep {

void install_stop_signal_handlers();
// The strongest request since the last call (terminate over drain), then cleared.
StopRequest take_stop_request();

}  // namespace memsweep
