// Cluster support without a cluster: batch templates (placeholders, optional #SBATCH lines, errors with file
// and line) and node-local scratch (backup-API copy and atomic rename, resume from the shared copy,
// checkpoint triggers).
#define BOOST_TEST_MODULE test_cluster
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include "orchestrator/cluster/batch_template.h"
#include "orchestrator/store/lease.h"
#include "orchestrator/store/snapshot.h"
#include "orchestrator/store/sqlite.h"
#include "study_fixture.h"
#include "worker/base/error.h"

namespace {

using namespace memsweep;
using memsweep_test::StudyFolder;
namespace fs = std::filesystem;

bool error_contains(const std::function<void()>& f, const std::string& text) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).find(text) != std::string::npos) return true;
    BOOST_TEST_MESSAGE("error was: " << e.what());
    return false;
  }
  return false;
}

int64_t count_rows(const std::string& path) {
  Database db(path, true);
  Statement s = db.prepare("SELECT COUNT(*) FROM t");
  BOOST_REQUIRE(s.step());
  return s.integer(0);
}

void insert_rows(const std::string& path, int rows) {
  Database db(path);
  db.execute_script("CREATE TABLE IF NOT EXISTS t (x INTEGER);", "table");
  Transaction transaction(db);
  for (int i = 0; i < rows; ++i) db.prepare("INSERT INTO t (x) VALUES (?)").bind(1, i).run();
  transaction.commit();
}

}  // namespace

BOOST_AUTO_TEST_CASE(template_placeholders_render_as_a_table_of_cases) {
  const TemplateValues values = {{"nodes", "2"}, {"partition", ""}, {"account", "proj"}, {"name", "s"}};
  struct Case {
    std::string in, out;
  } cases[] = {
      {"#SBATCH --nodes={{nodes}}\n", "#SBATCH --nodes=2\n"},
      {"#SBATCH --nodes={{ nodes }}\n", "#SBATCH --nodes=2\n"},
      {"#SBATCH --partition={{partition}}\n", ""},                  // optional line dropped
      {"  #SBATCH --partition={{partition}}\n", ""},                // indented too
      {"#SBATCH --account={{account}}\n", "#SBATCH --account=proj\n"},
      {"echo '{{partition}}'\n", "echo ''\n"},                      // only #SBATCH lines are dropped
      {"#SBATCH --x={{partition}}{{account}}\n", "#SBATCH --x=proj\n"},  // kept: one value is set
      {"#SBATCH --requeue\n", "#SBATCH --requeue\n"},
      {"a {{name}}-{{nodes}} b", "a s-2 b\n"},
      {"${HOME} {x} }}\n", "${HOME} {x} }}\n"},
  };
  for (const Case& c : cases) BOOST_TEST(render_batch_template(c.in, "t.sbatch", values) == c.out, c.in);
}

BOOST_AUTO_TEST_CASE(template_errors_name_the_file_line_and_known_names) {
  const TemplateValues values = {{"nodes", "2"}, {"time", "1:00"}};
  BOOST_TEST(error_contains([&] { render_batch_template("#!/bin/bash\n\n#SBATCH --gpus={{gpus}}\n", "cluster/x.sbatch", values); },
                            "cluster/x.sbatch:3: unknown placeholder '{{gpus}}' (known: nodes, time)"));
  BOOST_TEST(error_contains([&] { render_batch_template("x\n{{nodes\n", "y.sbatch", values); }, "y.sbatch:2: '{{' without a closing '}}'"));
}

BOOST_AUTO_TEST_CASE(snapshot_copies_a_consistent_database_and_replaces_the_old_copy) {
  StudyFolder folder;
  const std::string live = (folder.root() / "live.sqlite").string(), shared = (folder.root() / "shared.sqlite").string();
  insert_rows(live, 3);
  snapshot_database(live, shared);
  BOOST_TEST(count_rows(shared) == 3);
  insert_rows(live, 4);
  Database reader(shared, true);  // a reader of the old copy keeps its file; the rename replaces the name
  snapshot_database(live, shared);
  BOOST_TEST(count_rows(shared) == 7);
  for (const auto& entry : fs::directory_iterator(folder.root()))  // no partial or journal file left behind
    BOOST_TEST(entry.path().filename().string().find("partial") == std::string::npos, entry.path());
  BOOST_TEST(error_contains([&] { snapshot_database((folder.root() / "absent.sqlite").string(), shared); }, "no such file"));
  // A failed copy (its folder cannot be made: a file is in the way) leaves the existing shared copy as it was.
  BOOST_TEST(error_contains([&] { snapshot_database(live, shared + "/x.sqlite"); }, "cannot create the store's folder " + shared));
  BOOST_TEST(count_rows(shared) == 7);
}

BOOST_AUTO_TEST_CASE(scratch_store_starts_from_the_shared_copy_and_checkpoints_when_due) {
  StudyFolder folder;
  const std::string shared = (folder.root() / "study.sqlite").string();
  const std::string scratch = (folder.root() / "node-local").string();
  auto t = std::chrono::steady_clock::time_point{};
  auto now = [&t] { return t; };
  {
    ScratchStore store(shared, scratch, /*every_s=*/60, /*every_units=*/3, now);
    BOOST_TEST(store.live_path() == scratch + "/study.sqlite");
    BOOST_TEST(!fs::exists(shared));
    insert_rows(store.live_path(), 1);
    BOOST_TEST(!store.after_units(1));
    BOOST_TEST(!store.after_units(2));
    BOOST_TEST(store.after_units(3));  // every 3 units
    BOOST_TEST(count_rows(shared) == 1);
    insert_rows(store.live_path(), 1);
    t += std::chrono::seconds(59);
    BOOST_TEST(!store.after_units(4));
    t += std::chrono::seconds(2);
    BOOST_TEST(store.after_units(4));  // 60 s passed with a new unit
    t += std::chrono::seconds(120);
    BOOST_TEST(!store.after_units(4));  // nothing new: no copy
    insert_rows(store.live_path(), 5);
    store.checkpoint();  // at exit
    BOOST_TEST(count_rows(shared) == 7);
    BOOST_TEST(store.checkpoints() == 3);
  }
  // The next job: a stale live copy on the node (newer, never checkpointed) is replaced by the shared copy.
  insert_rows(scratch + "/study.sqlite", 100);
  ScratchStore again(shared, scratch, 0, 0, now);
  BOOST_TEST(count_rows(again.live_path()) == 7);
  BOOST_TEST(!again.after_units(1000));  // both triggers off
  BOOST_TEST(error_contains([&] { ScratchStore(shared, folder.root().string(), 0, 0); }, "holds the shared store"));
}

// The store's lease: exclusive while held, released on destruction, and a holder whose file was replaced by a
// successor (its heartbeat was late) knows it lost the store and refuses to copy a scratch store over it.
BOOST_AUTO_TEST_CASE(lease_is_exclusive_released_and_lost_when_taken_over) {
  StudyFolder folder;
  const std::string store = (folder.root() / "study.sqlite").string(), lease_file = store + ".lease";
  LeaseHolder me = LeaseHolder::of_this_process();
  {
    StoreLease held(store, me, /*expiry_s=*/60, /*heartbeat_s=*/0.02);
    BOOST_TEST(fs::exists(lease_file));
    BOOST_TEST(error_contains([&] { StoreLease(store, me, 60, 0.02); }, "is in use by memsweep run on " + me.host));
    LeaseHolder recorded;
    BOOST_TEST(read_lease(store, recorded));
    BOOST_TEST(recorded.pid == me.pid);
    const double first_beat = recorded.heartbeat;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    BOOST_TEST(read_lease(store, recorded));
    BOOST_TEST(recorded.heartbeat > first_beat);  // the heartbeat moves
    BOOST_TEST(!held.lost());
    held.check_held();
  }
  BOOST_TEST(!fs::exists(lease_file));  // released
  {
    StoreLease held(store, me, 60, 0.02);
    std::ofstream(lease_file) << R"({"host": "node-3", "pid": 1, "slurm_job_id": "", "restart_count": 0,)"
                              << R"( "started": "x", "heartbeat": 1e12, "token": "successor"})" << "\n";
    for (int i = 0; i < 100 && !held.lost(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_TEST(held.lost());
    BOOST_TEST(error_contains([&] { held.check_held(); }, "is no longer this run's"));
  }
  BOOST_TEST(fs::exists(lease_file));  // the successor's file is not removed
}
