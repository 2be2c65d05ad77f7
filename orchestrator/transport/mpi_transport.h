#pragma once
// Open MPI behind the transport interfaces. The only file that includes mpi.h is mpi_transport.cpp; built
// when MEMSWEEP_WITH_MPI. Waiting is Iprobe + sleep with a growing backoff, never a spinning blocking
// receive: ranks share cores with the workers' compute.
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/transport/transport.h"

namespace memsweep {

// True when the process was started by mpirun/srun with PMI (then MPI must be initialized).
bool launched_by_mpi();

// MPI_Init_thread in the constructor, MPI_Finalize in the destructor. One per process.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // World ranks sharing this rank's node (MPI_Comm_split_type shared).
  std::vector<int> node_ranks() const;
  std::string host() const;
  // Rank 0's value reaches every rank (collective: every rank calls it).
  void broadcast(std::string& value) const;
  // Ends every rank of the job now (MPI_Abort), from any rank.
  [[noreturn]] void abort(int exit_code) const;

  std::unique_ptr<CoordinatorTransport> coordinator_transport() const;  // rank 0
  std::unique_ptr<WorkerTransport> worker_transport() const;            // ranks >= 1

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace memsweep
