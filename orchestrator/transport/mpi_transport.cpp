#include "orchestrator/transport/mpi_transport.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "worker/base/error.h"

namespace memsweep {

namespace {

const int kTag = 7;

void check(int status, const char* what) {
  if (status != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(status, text, &length);
    throw Error(std::string("MPI: ") + what + " failed: " + std::string(text, size_t(length)));
  }
}

void send_bytes(int destination, const std::string& bytes) {
  check(MPI_Send(bytes.data(), int(bytes.size()), MPI_CHAR, destination, kTag, MPI_COMM_WORLD), "MPI_Send");
}

// Receives a message from `source` (MPI_ANY_SOURCE allowed) if one arrives within wait_s; negative waits forever.
bool receive_bytes(int source, double wait_s, std::string& bytes, int& from) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::max(wait_s, 0.0)));
  std::chrono::microseconds backoff(200);
  while (true) {
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(source, kTag, MPI_COMM_WORLD, &flag, &status), "MPI_Iprobe");
    if (flag) {
      int count = 0;
      check(MPI_Get_count(&status, MPI_CHAR, &count), "MPI_Get_count");
      bytes.resize(size_t(count));
      check(MPI_Recv(bytes.data(), count, MPI_CHAR, status.MPI_SOURCE, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
      from = status.MPI_SOURCE;
      return true;
    }
    if (wait_s >= 0 && Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(50000));
  }
}

class MpiCoordinatorTransport : public CoordinatorTransport {
 public:
  explicit MpiCoordinatorTransport(int size) : size_(size) {}
  std::vector<int> worker_ranks() const override {
    std::vector<int> ranks;
    for (int r = 1; r < size_; ++r) ranks.push_back(r);
    return ranks;
  }
  void send(int rank, const Message& message) override { send_bytes(rank, encode(message)); }
  std::optional<Incoming> poll(double wait_s) override {
    std::string bytes;
    int from = 0;
    if (!receive_bytes(MPI_ANY_SOURCE, wait_s, bytes, from)) return std::nullopt;
    return Incoming{from, decode_message(bytes)};
  }
  void abort(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
  }

 private:
  int size_;
};

class MpiWorkerTransport : public WorkerTransport {
 public:
  void send(const Message& message) override { send_bytes(0, encode(message)); }
  Message receive() override {
    std::string bytes;
    int from = 0;
    receive_bytes(0, -1, bytes, from);
    return decode_message(bytes);
  }
  bool cancel_arrived() override {
    std::string bytes;
    int from = 0;
    if (!receive_bytes(0, 0, bytes, from)) return false;
    const Message m = decode_message(bytes);
    if (m.type != MessageType::cancel) throw Error("worker: rank 0 sent a message other than cancel while a unit runs");
    return true;
  }
};

}  // namespace

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(name)) return true;
  return false;
}

MpiSession::MpiSession() {
  int provided = 0;
  // Only the main thread calls MPI (libtorch's threads never do).
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

std::vector<int> MpiSession::node_ranks() const {
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  std::vector<int> ranks(size_t(node_size), 0);
  int mine = rank_;
  check(MPI_Allgather(&mine, 1, MPI_INT, ranks.data(), 1, MPI_INT, node), "MPI_Allgather");
  MPI_Comm_free(&node);
  return ranks;
}

std::string MpiSession::host() const {
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  MPI_Get_processor_name(name, &length);
  return std::string(name, size_t(length));
}

void MpiSession::broadcast(std::string& value) const {
  int length = int(value.size());
  check(MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
  value.resize(size_t(length));
  check(MPI_Bcast(value.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
}

void MpiSession::abort(int exit_code) const {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

std::unique_ptr<CoordinatorTransport> MpiSession::coordinator_transport() const {
  return std::make_unique<MpiCoordinatorTransport>(size_);
}

std::unique_ptr<WorkerTransport> MpiSession::worker_transport() const { return std::make_unique<MpiWorkerTransport>(); }

}  // namespace memsweep
