#pragma once
// Node-local scratch for the live store. SQLite over Lustre/GPFS/NFS is slow and its locks may not be
// coherent; the safe pattern is a live store on node-local disk whose consistent copies replace the shared
// file at checkpoints and at exit. A copy is SQLite's online backup API into a temporary file beside the
// destination, fsync'ed, then rename()d over it: a reader, a crash or a SIGKILL mid-copy sees the old copy or
// the new one, never a torn file. The shared copy is the one that counts: a job starts from it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace memsweep {

// Copies the database `source` to `destination` (created or replaced atomically; its folder is created when
// missing). REQUIRES: no write transaction open on `source` in this thread (other connections may read).
void snapshot_database(const std::string& source, const std::string& destination);

// The live store of a run on node-local scratch and its checkpoints to the shared path.
class ScratchStore {
 public:
  using Clock = std::chrono::steady_clock;
  // Prepares `scratch_dir`/NAME (NAME: the shared file's name): stale files there are removed, then the shared
  // copy, when it exists, is copied in. every_s / every_units: a checkpoint once either many seconds or units
  // done have passed since the last one (0: that trigger is off).
  ScratchStore(std::string shared_path, const std::string& scratch_dir, double every_s, int64_t every_units,
               std::function<Clock::time_point()> now = [] { return Clock::now(); });
  const std::string& live_path() const { return live_path_; }
  const std::string& shared_path() const { return shared_path_; }
  // Called after each unit's outcome with the count of units finished in this run: checkpoints when due.
  // Returns whether it checkpointed.
  bool after_units(int64_t units_finished);
  // Copies the live store to the shared path now (at exit, after SIGTERM/SIGUSR1 too).
  void checkpoint();
  // Called before a copy replaces the shared store; throws to refuse (the run's lease on the store was lost).
  void set_before_replace(std::function<void()> check) { before_replace_ = std::move(check); }
  int checkpoints() const { return checkpoints_; }

 private:
  std::string shared_path_, live_path_;
  double every_s_;
  int64_t every_units_, units_at_last_ = 0;
  std::function<Clock::time_point()> now_;
  std::function<void()> before_replace_;
  Clock::time_point last_;
  int checkpoints_ = 0;
};

}  // namespace memsweep
