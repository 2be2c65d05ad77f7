// memsweep run: the study under mpirun (rank 0 schedules and writes, ranks >= 1 work) or alone (one process
// does both). Rerunning the same study resumes it.
#include <torch/torch.h>
#include <unistd.h>

#include <sstream>

#include <cstdlib>
#include <iostream>

#include "memsweep_version.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/model_options.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/cli/signals.h"
#include "orchestrator/cli/study_setup.h"
#include "orchestrator/scheduler/coordinator.h"
#include "orchestrator/scheduler/progress.h"
#include "orchestrator/store/lease.h"
#include "orchestrator/store/snapshot.h"
#include "orchestrator/worker_loop/device_choice.h"
#include "orchestrator/worker_loop/worker_loop.h"
#include "worker/base/error.h"
#include "worker/base/log.h"
#ifdef MEMSWEEP_WITH_MPI
#include "orchestrator/transport/mpi_transport.h"
#endif

namespace po = boost::program_options;

namespace memsweep {

namespace {

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

struct RunArguments {
  std::string study, db;
  bool extend = false, retry_failed = false;
  double progress_every_s = 60;
  std::string scratch;  // node-local folder of the live store; "" keeps it at the shared path
  double checkpoint_every_s = 600;
  int64_t checkpoint_every_units = 0;
};

// Rank 0's part: everything up to the coordinator, then the coordinator. Returns the process exit code. An error
// before the coordinator starts stops the (idle) workers so every rank ends; one after it ends an MPI job with
// MPI_Abort, since workers may be in the middle of units (everything recorded is committed first; the next run
// requeues the rest).
int coordinate_study(const PreparedStudy& prepared, const RunArguments& args, CoordinatorTransport& transport, int ranks,
                     StoreLease& lease) {
  const Study& study = prepared.study;
  std::optional<ScratchStore> scratch;
  std::unique_ptr<Store> store;
  int64_t run = 0;
  try {
    if (!args.scratch.empty()) {
      scratch.emplace(study.store.path, args.scratch, args.checkpoint_every_s, args.checkpoint_every_units);
      scratch->set_before_replace([&lease] { lease.check_held(); });
    }
    store = open_sqlite_store(scratch ? scratch->live_path() : study.store.path, study.store.journal_mode);
    store->register_study(study, prepared.text, prepared.models, prepared.datasets,
                          [&](const std::vector<Unit>& held) { return prepared.units_to_add(held); }, args.extend);
    if (args.retry_failed)
      if (int retried = store->retry_failed()) log_info("--retry-failed: " + std::to_string(retried) + " failed units are pending again");
    if (int requeued = store->requeue_running()) log_info("resume: " + std::to_string(requeued) + " units left running by an earlier job are pending again");
    run = store->begin_run({MEMSWEEP_VERSION, MEMSWEEP_GIT_COMMIT, TORCH_VERSION, host_name(), ranks});
  } catch (const std::exception&) {
    if (ranks > 1 && !stop_idle_workers(transport, study.run.cancel_wait_s)) {
      log_error("workers did not answer a stop; ending the job with MPI_Abort");
      transport.abort(1);
    }
    throw;
  }
  ProgressDisplay display(isatty(STDERR_FILENO) != 0, args.progress_every_s);
  CoordinatorHooks hooks;
  hooks.take_stop_request = [&lease] {
    const StopRequest request = lease.lost() ? StopRequest::terminate : take_stop_request();
    if (request != StopRequest::none) lease.mark_stopping();  // a rerun meanwhile waits for this one to end
    return request;
  };
  int64_t finished_before = -1;
  Progress last;
  hooks.on_progress = [&](const Progress& p) {
    last = p;
    display.update(p);
    // Called between the coordinator's transactions, so a copy of the live store is consistent.
    if (finished_before < 0) finished_before = p.done + p.failed - p.done_this_run;
    if (scratch) scratch->after_units(p.done + p.failed - finished_before);
  };
  RunOutcome outcome;
  try {
    outcome = coordinate(study, *store, run, transport, hooks);
    lease.mark_stopping();
    display.finish();
    store->end_run(run, lease.lost() ? "error: the store's lease was taken over" : run_outcome_name(outcome));
    store.reset();  // everything is committed; close the file before it is copied or the job is torn down
    if (scratch) scratch->checkpoint();  // after SIGTERM and SIGUSR1 too: they end the coordinator normally
    if (lease.lost()) throw Error("the store's lease " + lease.path() + " was taken over by another run: this one stopped");
  } catch (const std::exception& e) {
    lease.mark_stopping();
    display.finish();
    if (store) {
      store->end_run(run, std::string("error: ") + e.what());
      store.reset();
      if (scratch) try { scratch->checkpoint(); } catch (const std::exception& copy) { log_error(copy.what()); }
    }
    if (ranks > 1) {
      log_error(e.what());
      log_error("ending the job with MPI_Abort (committed results are kept; the next run requeues the rest)");
      transport.abort(1);
    }
    throw;
  }
  log_info(std::string("run ") + run_outcome_name(outcome) + "; results in " + study.store.path);
  if (outcome == RunOutcome::hung) {
    log_error("a worker never answered; ending the job with MPI_Abort");
    transport.abort(3);
  }
  if (outcome == RunOutcome::interrupted && interrupt_signalled()) {
    log_info("interrupted (Ctrl-C): in-flight units were requeued; rerun the same command to resume");
    return 130;
  }
  if (outcome == RunOutcome::finished && last.failed > 0) {
    log_error(std::to_string(last.failed) + " unit(s) failed with their attempts used up: `memsweep status " + study.store.path +
              "` lists their errors; after fixing the cause, rerun with --retry-failed");
    return 2;
  }
  return 0;
}

}  // namespace

int run_command(const Arguments& raw) {
  const CommandSpec spec{
      "run", "STUDY.toml [--db PATH] [--extend] [--retry-failed] [--progress-every SECONDS] [--scratch DIR [--checkpoint-every SECONDS]]",
      "Runs a study: every model x dataset shard x intervention group of STUDY.toml (keys: schemas/study.md),\n"
      "results in one SQLite store. Under `mpirun -np N` rank 0 schedules and writes and ranks 1..N-1 work (one\n"
      "device each: the worker's position on its node modulo the visible GPUs, cpu without CUDA); alone, one\n"
      "process does both.\n\n"
      "Resume: rerunning the same study skips done units and requeues units a dead job left running. A changed\n"
      "study file is refused unless --extend, which adds only what no unit covers yet (new models, datasets,\n"
      "interventions; never an example twice) and keeps everything recorded; `memsweep plan` shows what it adds.\n"
      "Units recorded failed (no attempts left) stay failed unless --retry-failed.\n"
      "Signals to rank 0: SIGTERM requeues in-flight units, commits, has their workers abandon them at the next\n"
      "batch and exits 0; SIGUSR1 stops handing out units, lets in-flight ones finish within [run] drain_grace_s,\n"
      "then requeues and cancels the rest the same way and exits 0. A worker that sees SIGTERM itself abandons\n"
      "its unit at the next batch. Workers that do not answer within [run] cancel_wait_s end the job with MPI_Abort.\n"
      "A worker past [run] unit_timeout_s has its unit requeued under a new attempt; if it never answers, the job\n"
      "ends with MPI_Abort (exit 3) once everything else is done. SIGINT (Ctrl-C) does what SIGTERM does, then exits 130.\n"
      "Exit status: 0 every unit done, or stopped by SIGTERM/SIGUSR1 with units left (a batch script's requeue logic\n"
      "relies on it); 1 an error (printed; under mpirun every rank ends); 2 nothing left to run but units failed with\n"
      "their attempts used up (`memsweep status` lists them; --retry-failed after fixing the cause); 3 a hung worker;\n"
      "130 Ctrl-C. One run per store: a second is refused at once, naming the holder of STORE.lease (README).\n\n"
      "Node-local scratch (for a store on Lustre/GPFS/NFS): --scratch DIR keeps the live store in DIR (a node-local\n"
      "disk such as $SLURM_TMPDIR) and copies it to the store path with SQLite's backup API and an atomic rename every\n"
      "--checkpoint-every seconds (or --checkpoint-every-units units) and at exit, also after SIGTERM or SIGUSR1. A\n"
      "run starts from the shared copy, never from a live copy an earlier job left in DIR; units done after the last\n"
      "copy of a job killed with SIGKILL run again. Only rank 0 touches the store, so DIR is on rank 0's node."};
  RunArguments args;
  po::options_description options("options");
  options.add_options()("study", po::value(&args.study)->required(), "the study file")(
      "db", po::value(&args.db), "the store (overrides [store] path)")("extend", po::bool_switch(&args.extend),
                                                                       "accept a changed study file: add its new units")(
      "retry-failed", po::bool_switch(&args.retry_failed), "give units recorded failed new attempts (after fixing their cause)")(
      "progress-every", po::value(&args.progress_every_s)->default_value(60), "seconds between progress lines in batch logs")(
      "scratch", po::value(&args.scratch), "node-local folder for the live store, copied to the store path at checkpoints")(
      "checkpoint-every", po::value(&args.checkpoint_every_s)->default_value(600), "with --scratch: seconds between copies (0: off)")(
      "checkpoint-every-units", po::value(&args.checkpoint_every_units)->default_value(0), "with --scratch: finished units between copies (0: off)");
  po::positional_options_description positional;
  positional.add("study", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  install_stop_signal_handlers();
#ifdef MEMSWEEP_WITH_MPI
  if (launched_by_mpi()) {
    MpiSession mpi;
    set_log_rank(mpi.rank());
    // Rank 0 prepares (checks, hashes, counts) while workers wait; it sends the device policy and the devices per
    // worker ("auto 1"), or "" when the
    // study is wrong, so every rank ends cleanly with the error shown once.
    std::string policy;
    std::optional<PreparedStudy> prepared;
    std::optional<StoreLease> lease;
    if (mpi.rank() == 0) {
      try {
        prepared = prepare_study(args.study, args.db);
        policy = prepared->study.run.device + " " + std::to_string(prepared->study.run.devices_per_worker);
        if (mpi.size() < 2) throw Error("mpirun -np 1: run without mpirun, or with at least 2 ranks");
        lease.emplace(prepared->study.store.path, LeaseHolder::of_this_process());
      } catch (const std::exception& e) {
        log_error(e.what());
        policy.clear();
      }
    }
    mpi.broadcast(policy);
    if (policy.empty()) return 1;
    const std::vector<int> node_ranks = mpi.node_ranks();  // collective: every rank takes part
    if (mpi.rank() == 0) return coordinate_study(*prepared, args, *mpi.coordinator_transport(), mpi.size(), *lease);
    const int index = local_worker_index(mpi.rank(), node_ranks, mpi.size());
    std::istringstream placement(policy);
    std::string device_policy;
    int devices_per_worker = 1;
    placement >> device_policy >> devices_per_worker;
    const std::string device = choose_device(device_policy, index, int(torch::cuda::device_count()),
                                             std::getenv("CUDA_VISIBLE_DEVICES"), devices_per_worker);
    set_intra_op_threads(workers_on_node(node_ranks, mpi.size()));
    try {
      TorchUnitRunner runner(device, devices_per_worker);
      serve_worker(*mpi.worker_transport(), runner, mpi.host(), terminate_signalled);
    } catch (const std::exception& e) {  // outside a unit (a unit's own errors are reported to rank 0 and retried)
      log_error(e.what());
      log_error("ending the job with MPI_Abort");
      mpi.abort(1);
    }
    return 0;
  }
#endif
  const PreparedStudy prepared = prepare_study(args.study, args.db);
  StoreLease lease(prepared.study.store.path, LeaseHolder::of_this_process());
  set_intra_op_threads(1);
  const RunSettings& settings = prepared.study.run;
  const std::string device = choose_device(settings.device, 0, int(torch::cuda::device_count()), std::getenv("CUDA_VISIBLE_DEVICES"),
                                           settings.devices_per_worker);
  TorchUnitRunner runner(device, settings.devices_per_worker);
  // One process: the unit holds the process, so it stops itself between batches on SIGTERM, or on SIGUSR1 once
  // the grace period has passed; the coordinator then requeues it.
  const double grace = prepared.study.run.drain_grace_s;
  LocalTransport transport(runner, host_name(), [grace] { return terminate_signalled() || drain_grace_passed(grace); });
  return coordinate_study(prepared, args, transport, 1, lease);
}

}  // namespace memsweep
