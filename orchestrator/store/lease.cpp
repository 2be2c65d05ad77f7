#include "orchestrator/store/lease.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "worker/base/error.h"
#include "worker/base/log.h"

namespace fs = std::filesystem;

namespace memsweep {

namespace {

double seconds_since_epoch() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

nlohmann::json to_json(const LeaseHolder& h) {
  return {{"host", h.host}, {"pid", h.pid}, {"slurm_job_id", h.slurm_job_id}, {"restart_count", h.restart_count},
          {"started", h.started}, {"heartbeat", h.heartbeat}, {"token", h.token}, {"stopping", h.stopping}};
}

// The file's holder; false when it is missing or not (yet) a whole record.
bool read_holder(const std::string& path, LeaseHolder& h) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  try {
    h.host = j.at("host").get<std::string>();
    h.pid = j.at("pid").get<int64_t>();
    h.slurm_job_id = j.at("slurm_job_id").get<std::string>();
    h.restart_count = j.at("restart_count").get<int64_t>();
    h.started = j.at("started").get<std::string>();
    h.heartbeat = j.at("heartbeat").get<double>();
    h.token = j.at("token").get<std::string>();
    h.stopping = j.value("stopping", false);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  return true;
}

// Writes the record to a file of its own and renames it over `path` (a reader sees the old record or the new one).
void replace_file(const std::string& path, const LeaseHolder& h) {
  const std::string partial = path + ".partial-" + std::to_string(::getpid());
  {
    std::ofstream out(partial, std::ios::trunc);
    out << to_json(h).dump() << "\n";
    out.close();
    if (!out) throw Error("cannot write the store's lease " + partial);
  }
  fs::rename(partial, path);
}

// Creates `path` only if it does not exist (O_EXCL: atomic on NFSv3+ and on the cluster file systems).
bool create_exclusively(const std::string& path, const LeaseHolder& h) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    if (errno == EROFS || errno == EACCES)  // as the store itself would be refused
      throw Error("cannot open the store " + path.substr(0, path.size() - std::strlen(".lease")) + " for writing: the file or its " +
                  "file system is read-only (its lease " + path + " cannot be created)");
    throw Error("cannot create the store's lease " + path + ": " + std::strerror(errno));
  }
  const std::string text = to_json(h).dump() + "\n";
  const bool written = ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());
    throw Error("cannot write the store's lease " + path + " (disk full?)");
  }
  return true;
}

// A holder from another SLURM job (a --chain successor, a resubmission): gone once SLURM no longer runs that job.
// Asked of squeue; "" when squeue is not there or says nothing useful (the heartbeat rule then decides).
std::string slurm_job_state(const std::string& job_id) {
  if (job_id.empty() || job_id.find_first_not_of("0123456789_") != std::string::npos) return "";
  const std::string command = "squeue -h -j " + job_id + " -o %T 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return "";
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = ::pclose(pipe);
  while (!output.empty() && std::isspace(static_cast<unsigned char>(output.back()))) output.pop_back();
  // A job that left the queue long ago: "Invalid job id specified"; one that just left: no line.
  if (output.find("Invalid job id") != std::string::npos || (status == 0 && output.empty())) return "ENDED";
  if (status != 0 || output.find(' ') != std::string::npos) return "";  // no squeue, no controller: unknown
  return output;
}

bool slurm_job_gone(const std::string& state) {
  for (const char* ended : {"ENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                            "BOOT_FAIL", "DEADLINE"})
    if (state == ended) return true;
  return false;
}

bool process_alive(int64_t pid) {
  if (pid <= 0 || (::kill(pid_t(pid), 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");  // a zombie has ended: only its parent has not looked
  std::string text;
  std::getline(stat, text);
  const size_t paren = text.rfind(')');
  return !(paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z');
}

std::string new_token() {
  std::random_device random;
  std::ostringstream token;
  token << std::hex << random() << random() << "-" << ::getpid();
  return token.str();
}

}  // namespace

LeaseHolder LeaseHolder::of_this_process() {
  LeaseHolder h;
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  h.host = name;
  h.pid = ::getpid();
  if (const char* job = std::getenv("SLURM_JOB_ID")) h.slurm_job_id = job;
  if (const char* restarts = std::getenv("SLURM_RESTART_COUNT")) h.restart_count = std::atoll(restarts);
  return h;
}

std::string LeaseHolder::describe(double now) const {
  std::string text = "memsweep run on " + host + " (pid " + std::to_string(pid);
  if (!slurm_job_id.empty()) text += ", SLURM job " + slurm_job_id + ", restart " + std::to_string(restart_count);
  return text + ") since " + started + ", heartbeat " + std::to_string(int64_t(now - heartbeat)) + " s ago";
}

std::string lease_path_of(const std::string& store_path) { return store_path + ".lease"; }

bool read_lease(const std::string& store_path, LeaseHolder& holder) { return read_holder(lease_path_of(store_path), holder); }

StoreLease::StoreLease(const std::string& store_path, LeaseHolder me, double expiry_s, double heartbeat_s)
    : path_(lease_path_of(store_path)), me_(std::move(me)), heartbeat_s_(heartbeat_s) {
  me_.started = now_utc();
  me_.heartbeat = seconds_since_epoch();
  me_.token = new_token();
  const std::string folder = fs::path(path_).parent_path().string();
  if (!folder.empty()) {
    std::error_code error;
    fs::create_directories(folder, error);
    if (error) throw Error("cannot create the store's folder " + folder + ": " + error.message());
  }
  // A holder on this host that is ending (a crashed job's rank 0 still committing): wait for it, then try again.
  for (auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(kLeaseStoppingWaitSeconds);;) {
    if (create_exclusively(path_, me_)) {
      start_heartbeat();
      return;
    }
    LeaseHolder holder;
    const bool readable = read_holder(path_, holder), waited_enough = std::chrono::steady_clock::now() > give_up;
    if (!readable && !fs::exists(path_) && !waited_enough) continue;  // released this instant: try again
    if (!readable || holder.host != me_.host || !holder.stopping || !process_alive(holder.pid) || waited_enough) break;
    if (holder.pid != waited_for_) {
      log_info("waiting for " + holder.describe(seconds_since_epoch()) + ", which is ending, to release the store");
      waited_for_ = holder.pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!process_alive(holder.pid)) continue;  // gone: its file (if left) is taken over below at the next round
  }
  {
    LeaseHolder holder;
    const double now = seconds_since_epoch();
    std::string why;
    if (!read_holder(path_, holder)) {
      // Being written this instant, or left torn: judged by the file's age.
      std::error_code gone;
      const auto written = fs::last_write_time(path_, gone);
      const double age = gone ? 0 : std::chrono::duration<double>(fs::file_time_type::clock::now() - written).count();
      if (!gone && age > expiry_s) why = "an unreadable lease file older than its expiry";
      else throw Error("the store " + store_path + " is being opened by another memsweep run (its lease " + path_ +
                       " is being written): run one at a time");
    } else if (holder.host == me_.host && !process_alive(holder.pid)) {
      why = "its process " + std::to_string(holder.pid) + " on this host is gone";
    } else if (!holder.slurm_job_id.empty() && holder.slurm_job_id == me_.slurm_job_id && me_.restart_count > holder.restart_count) {
      why = "SLURM requeued job " + holder.slurm_job_id + " (restart " + std::to_string(holder.restart_count) + " -> " +
            std::to_string(me_.restart_count) + ")";
    } else if (const std::string state = holder.slurm_job_id != me_.slurm_job_id ? slurm_job_state(holder.slurm_job_id) : "";
               slurm_job_gone(state)) {
      why = "its SLURM job " + holder.slurm_job_id + " has ended (squeue: " + state + ")";
    } else if (now - holder.heartbeat > expiry_s) {
      why = "its heartbeat stopped " + std::to_string(int64_t(now - holder.heartbeat)) + " s ago (expiry " +
            std::to_string(int64_t(expiry_s)) + " s)";
    } else {
      throw Error("the store " + store_path + " is in use by " + holder.describe(now) + ": one run per store (a second one " +
                  "would recompute the first one's units). Wait for it or cancel it; a run that is gone is taken over at " +
                  "once on its host, or " + std::to_string(int64_t(expiry_s)) + " s after its last heartbeat (" + path_ + ")");
    }
    replace_file(path_, me_);
    // Another run may have judged the same holder gone at the same moment: the last file written wins.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    LeaseHolder now_there;
    if (!read_holder(path_, now_there) || now_there.token != me_.token)
      throw Error("the store " + store_path + " was taken over by another memsweep run at the same moment (" +
                  (now_there.token.empty() ? std::string("lease unreadable") : now_there.describe(seconds_since_epoch())) + ")");
    log_warning("took over the store's lease " + path_ + " from " + holder.describe(now) + ": " + why);
  }
  start_heartbeat();
}

void StoreLease::start_heartbeat() { heartbeat_ = std::thread([this] { heartbeat_loop(); }); }

void StoreLease::mark_stopping() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (me_.stopping || lost_) return;
  me_.stopping = true;
  LeaseHolder there;
  if (!read_holder(path_, there) || there.token != me_.token) return;
  try {
    replace_file(path_, me_);
  } catch (const std::exception& e) {
    log_warning(std::string("lease: ") + e.what());
  }
}

StoreLease::~StoreLease() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  LeaseHolder there;
  if (read_holder(path_, there) && there.token == me_.token) ::unlink(path_.c_str());
}

void StoreLease::beat() {
  std::lock_guard<std::mutex> lock(mutex_);
  LeaseHolder there;
  if (!read_holder(path_, there) || there.token != me_.token) {
    if (!lost_.exchange(true))
      log_error("the store's lease " + path_ + " was taken over by " +
                (there.token.empty() ? std::string("nobody (the file is gone)") : there.describe(seconds_since_epoch())) +
                ": this run stops");
    return;
  }
  me_.heartbeat = seconds_since_epoch();
  try {
    replace_file(path_, me_);
  } catch (const std::exception& e) {  // a full disk or a lost mount: retried at the next beat
    log_warning(std::string("lease heartbeat: ") + e.what());
  }
}

void StoreLease::heartbeat_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::duration<double>(heartbeat_s_));
    if (stopping_ || lost_) break;
    lock.unlock();
    beat();
    lock.lock();
  }
}

void StoreLease::check_held() const {
  LeaseHolder there;
  if (lost_ || !read_holder(path_, there) || there.token != me_.token)
    throw Error("the store's lease " + path_ + " is no longer this run's (another run took the store over): not replacing the "
                "shared store with this run's copy");
}

}  // namespace memsweep
