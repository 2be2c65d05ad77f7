#pragma once
// One writer per store. `memsweep run` holds a lease on the store for as long as it runs: a file STORE.lease beside
// the store at its shared path (with --scratch too, where each job works on a node-local copy), created with
// O_EXCL, naming its holder (host, pid, SLURM job id and restart count, start) and a heartbeat rewritten every
// kLeaseHeartbeatSeconds. A second run is refused at once, naming the holder (one that is ending, on the same host,
// is waited for: a rerun right after a crash). A holder that is gone is taken over:
// at once when that is provable (the same host and its pid is dead; the same SLURM job with a higher restart count,
// i.e. the job was requeued; another SLURM job that squeue says has ended), otherwise once its heartbeat is older than kLeaseExpirySeconds (hosts' clocks are
// assumed synchronized to well under that). No POSIX byte-range locks: they are not coherent on every NFS, Lustre or
// GPFS mount. Two runs that find the same dead holder at the same moment both replace its file; each then reads it
// back after a pause and only the one whose file is there goes on.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace memsweep {

inline constexpr double kLeaseHeartbeatSeconds = 30;
inline constexpr double kLeaseExpirySeconds = 300;
// How long a run waits for a holder on its host that is ending (it marked its lease "stopping": a crashed job's rank
// 0 still committing and copying its scratch store) before it gives up.
inline constexpr double kLeaseStoppingWaitSeconds = 120;

struct LeaseHolder {
  std::string host;
  int64_t pid = 0;
  std::string slurm_job_id;  // "" outside SLURM
  int64_t restart_count = 0;  // SLURM_RESTART_COUNT
  std::string started;        // UTC, ISO 8601
  double heartbeat = 0;       // seconds since the epoch
  std::string token;          // unique per acquisition: tells this holder's file from a successor's
  bool stopping = false;      // it is ending (signalled, finished, failed): a rerun on its host waits for it

  // This process: gethostname, getpid, SLURM_JOB_ID, SLURM_RESTART_COUNT.
  static LeaseHolder of_this_process();
  // "memsweep run on HOST (pid P, SLURM job J, restart R) since STARTED, heartbeat N s ago"
  std::string describe(double now) const;
};

std::string lease_path_of(const std::string& store_path);
// The holder recorded beside the store, if any (for `status`); nothing when there is no lease file or it cannot be read.
bool read_lease(const std::string& store_path, LeaseHolder& holder);

class StoreLease {
 public:
  // Takes the lease of the store at `store_path` or throws an Error naming the holder and what to do. Starts the
  // heartbeat thread. `expiry_s` and `heartbeat_s` are the documented constants outside tests.
  StoreLease(const std::string& store_path, LeaseHolder me, double expiry_s = kLeaseExpirySeconds,
             double heartbeat_s = kLeaseHeartbeatSeconds);
  ~StoreLease();  // stops the heartbeat and removes the file if it is still this holder's
  StoreLease(const StoreLease&) = delete;
  StoreLease& operator=(const StoreLease&) = delete;

  // Whether another run has taken the lease over (this one's heartbeat was late, e.g. a frozen node).
  bool lost() const { return lost_; }
  // Throws when the lease file is no longer this holder's: before a scratch copy replaces the shared store.
  void check_held() const;
  // Records that this run is ending, so that a rerun started meanwhile on this host waits for it instead of refusing.
  void mark_stopping();
  const std::string& path() const { return path_; }

 private:
  void beat();
  void heartbeat_loop();
  void start_heartbeat();

  std::string path_;
  LeaseHolder me_;
  double heartbeat_s_;
  std::atomic<bool> lost_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  int64_t waited_for_ = 0;  // the ending holder whose wait was logged
  std::thread heartbeat_;
};

}  // namespace memsweep
