#include "orchestrator/store/snapshot.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "orchestrator/store/sqlite.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace fs = std::filesystem;

namespace memsweep {

namespace {

// fsync of a file or a folder (a rename is durable once its folder is synced).
void sync_path(const std::string& path, bool folder) {
  const int fd = ::open(path.c_str(), folder ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw Error("cannot open " + path + " to sync it: " + std::strerror(errno));
  const int status = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  // Some file systems refuse fsync on a folder (EINVAL); the rename is still atomic there.
  if (status != 0 && !(folder && error == EINVAL)) throw Error("fsync of " + path + " failed: " + std::strerror(error));
}

void remove_with_sidecars(const std::string& path) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(path + suffix);
}

}  // namespace

void snapshot_database(const std::string& source, const std::string& destination) {
  if (!fs::exists(source)) throw Error("cannot copy the store " + source + ": no such file");
  const fs::path target(destination);
  const std::string folder = target.parent_path().empty() ? "." : target.parent_path().string();
  // Beside the destination, so the rename stays within one file system (atomic) and names this process.
  const std::string partial = destination + ".partial-" + std::to_string(::getpid());
  std::error_code error;
  if (!fs::is_directory(folder) && !fs::create_directories(folder, error) && error)
    throw Error("cannot create the store's folder " + folder + ": " + error.message());
  remove_with_sidecars(partial);
  try {
    {
      Database from(source, /*read_only=*/true);
      Database to(partial);
      from.backup_into(to);
      // The copy is a plain rollback-journal database whatever the live one used: WAL would be wrong on the
      // shared file system the copy usually lands on.
      to.execute_script("PRAGMA journal_mode = DELETE;", "the store copy's journal mode");
    }
    sync_path(partial, false);
    fs::rename(partial, destination);
    sync_path(folder, true);
  } catch (...) {
    std::error_code ignored;
    for (const char* suffix : {"", "-journal"}) fs::remove(partial + suffix, ignored);
    throw;
  }
}

ScratchStore::ScratchStore(std::string shared_path, const std::string& scratch_dir, double every_s, int64_t every_units,
                           std::function<Clock::time_point()> now)
    : shared_path_(std::move(shared_path)), every_s_(every_s), every_units_(every_units), now_(std::move(now)) {
  std::error_code error;
  fs::create_directories(scratch_dir, error);
  if (error) throw Error("cannot create the scratch folder " + scratch_dir + ": " + error.message());
  live_path_ = (fs::path(scratch_dir) / fs::path(shared_path_).filename()).string();
  if (fs::absolute(live_path_).lexically_normal() == fs::absolute(shared_path_).lexically_normal())
    throw Error("the scratch folder " + scratch_dir + " holds the shared store " + shared_path_ + " itself: use a node-local folder");
  // A live copy left by an earlier job on this node may be older or newer than the shared one; only the shared
  // copy is known to be consistent with what the cluster saw, so the job starts from it.
  remove_with_sidecars(live_path_);
  if (fs::exists(shared_path_)) {
    snapshot_database(shared_path_, live_path_);
    log_info("scratch: live store " + live_path_ + " copied from " + shared_path_);
  } else {
    log_info("scratch: live store " + live_path_ + " (new); copies go to " + shared_path_);
  }
  last_ = now_();
}

bool ScratchStore::after_units(int64_t units_finished) {
  const bool by_units = every_units_ > 0 && units_finished - units_at_last_ >= every_units_;
  const bool by_time = every_s_ > 0 && std::chrono::duration<double>(now_() - last_).count() >= every_s_ &&
                       units_finished > units_at_last_;
  if (!by_units && !by_time) return false;
  checkpoint();
  units_at_last_ = units_finished;
  return true;
}

void ScratchStore::checkpoint() {
  if (before_replace_) before_replace_();
  const Clock::time_point start = now_();
  snapshot_database(live_path_, shared_path_);
  last_ = now_();
  ++checkpoints_;
  log_info("scratch: checkpoint " + std::to_string(checkpoints_) + " copied to " + shared_path_ + " in " +
           std::to_string(std::chrono::duration<double>(last_ - start).count()) + " s");
}

}  // namespace memsweep
