#pragma once
// The results store: the one component rank 0 writes through. An interface, so tests can put a store in
// memory or make one fail at a chosen call (a crash between two commits); SqliteStore is the real one and the
// only code that includes sqlite3.h.
//
// Exactly-once: record_done() commits a unit's aggregates, its per-example rows and its status change in one
// transaction, and only for the unit's current attempt while it is running; anything else is ignored.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/study/study.h"
#include "worker/tasks/results.h"

namespace memsweep {

enum class UnitStatus { pending, running, done, failed };
const char* unit_status_name(UnitStatus status);

struct UnitRow {
  int64_t id = 0;
  Unit unit;
  UnitStatus status = UnitStatus::pending;
  int attempt = 0;      // the latest attempt id
  int failures = 0;
  int batch_size = 0;   // 0: the study's
  std::string error;
};

// What the study's units need to be registered: per dataset its content hash and size.
struct DatasetFacts {
  std::string name, content_hash;
  int64_t num_examples = 0;
};
struct ModelFacts {
  std::string name, tokenizer_hash;
};

struct Provenance {
  std::string memsweep_version, git_commit, libtorch_version, host;
  int ranks = 1;
};

struct Assignment;  // scheduler/scheduler.h

class Store {
 public:
  virtual ~Store() = default;
  // Records the study and the units `plan` gives for the units the store holds (all in one transaction); returns how
  // many it added. A store of another version of the study file is refused unless `extend`, which records the new
  // version and adds what it plans (only what no unit covers yet: study.h, expand_units). Refused either way, since
  // results would mix or be orphaned: a dataset whose file, kind or options changed, a model whose dtype, depth or
  // tokenizer changed, and (with `extend`) a model, dataset or intervention the store holds units for that the study
  // no longer names.
  virtual int64_t register_study(const Study& study, const std::string& study_text, const std::vector<ModelFacts>& models,
                                 const std::vector<DatasetFacts>& datasets, const UnitPlanner& plan, bool extend) = 0;
  virtual int64_t begin_run(const Provenance& provenance) = 0;
  virtual void end_run(int64_t run, const std::string& outcome) = 0;
  // Resume: units left running by a dead job become pending again. Returns how many.
  virtual int requeue_running() = 0;
  // `run --retry-failed`: failed units become pending with their failures and batch size reset. Returns how many.
  virtual int retry_failed() = 0;
  virtual std::vector<UnitRow> units() = 0;
  // A new attempt starts: returns its id (previous attempt + 1).
  virtual int start_attempt(int64_t run, int64_t unit, int rank, const std::string& host, const std::string& device) = 0;
  // Results of the attempt, one per intervention of the unit, each recorded under the intervention it names (in any
  // order); Error naming the unit and the intervention when a result is for one the unit does not have, two are for
  // one, or one has none. False (nothing written) when the attempt is not the unit's current running one.
  virtual bool record_done(int64_t unit, int attempt, const std::vector<ShardResult>& results, double seconds) = 0;
  // The attempt threw. `final`: no attempts left (failed), else pending again with `batch_size` (0: unchanged).
  virtual void record_failure(int64_t unit, int attempt, const std::string& error, bool final, int batch_size) = 0;
  // Back to pending without counting a failure (timeout, SIGTERM, drain); `why` goes to the attempt's outcome.
  virtual void requeue(int64_t unit, int attempt, const std::string& why) = 0;
};

// Opens (creating when absent) and migrates the store at `path` (":memory:" for tests). Refuses a store
// newer than this binary. Journal mode: rollback (DELETE) unless WAL is asked and the file system is local;
// WAL on NFS/Lustre/GPFS falls back to rollback with a warning.
std::unique_ptr<Store> open_sqlite_store(const std::string& path, JournalMode mode);

// The newest schema version this binary knows (the number of embedded migrations).
int latest_schema_version();

}  // namespace memsweep
