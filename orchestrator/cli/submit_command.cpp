// memsweep submit: a SLURM batch script for a study from a template in cluster/templates/, submitted with
// sbatch (or printed with --dry-run). Module loads and environment live in the template, not here.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/cli/study_setup.h"
#include "orchestrator/cluster/batch_template.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/base/log.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace memsweep {

namespace {

struct SubmitArguments {
  std::string study, db, time = "01:00:00", partition, account, qos, constraint, mem, mem_per_gpu, template_name, job_name, logs,
      scratch, script;
  std::vector<std::string> sbatch_lines;  // --sbatch "--reservation=x": any other #SBATCH line
  int nodes = 1, gpus_per_node = 0, workers_per_node = 0, cpus_per_worker = 1, chain = 1;
  double signal_lead_s = 0, checkpoint_every_s = 600;
  bool no_requeue = false, dry_run = false, extend = false, retry_failed = false, cpu = false;
};

fs::path executable_path() { return fs::canonical("/proc/self/exe"); }

// cluster/ of this checkout or installation: $MEMSWEEP_CLUSTER_DIR, else beside the binary's folder (a build
// folder inside the repository, or PREFIX/bin with PREFIX/share/memsweep/cluster).
fs::path cluster_dir() {
  if (const char* dir = std::getenv("MEMSWEEP_CLUSTER_DIR")) return fs::absolute(dir);
  const fs::path bin = executable_path().parent_path();
  for (const fs::path& candidate : {bin.parent_path() / "cluster", bin.parent_path() / "share" / "memsweep" / "cluster"})
    if (fs::is_directory(candidate / "templates")) return candidate;
  throw Error("cannot find memsweep's cluster/ folder beside " + bin.string() + ": set MEMSWEEP_CLUSTER_DIR");
}

fs::path template_path(const SubmitArguments& args, const fs::path& cluster) {
  std::string name = args.template_name;
  if (name.empty()) name = args.nodes > 1 ? "multi_node" : args.gpus_per_node > 0 ? "gpu_node" : "cpu_test";
  if (name.find('/') != std::string::npos || fs::exists(name)) return fs::absolute(name);
  const fs::path path = cluster / "templates" / (name + ".sbatch");
  if (!fs::exists(path)) throw Error("no batch template '" + name + "': " + path.string() + " does not exist");
  return path;
}

// sbatch's --time in seconds, in each form sbatch accepts: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (0 for "UNLIMITED").
// Another form is an error here rather than sbatch's later.
double time_limit_seconds(const std::string& time) {
  if (time == "UNLIMITED" || time == "INFINITE") return 0;
  static const std::regex form(R"(^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$)");
  std::smatch m;
  if (!std::regex_match(time, m, form))
    throw Error("--time '" + time + "' is not a SLURM time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS "
                "(e.g. 12:00:00 for 12 hours, 2-00:00:00 for two days)");
  auto number = [&](int i) { return m[i].matched ? std::stod(m[i].str()) : 0.0; };
  if (m[1].matched) return ((number(1) * 24 + number(2)) * 60 + number(3)) * 60 + number(4);
  if (m[7].matched) return (number(5) * 60 + number(6)) * 60 + number(7);  // H:M:S
  return number(5) * 60 + number(6);                                        // M or M:S
}

std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs argv, returns its exit status and stdout (stderr passes through).
std::pair<int, std::string> run_capturing(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw Error("pipe() failed");
  const pid_t pid = fork();
  if (pid < 0) throw Error("fork() failed");
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::vector<char*> c_argv;
    for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
    c_argv.push_back(nullptr);
    execvp(c_argv[0], c_argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer, size_t(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

}  // namespace

int submit_command(const Arguments& raw) {
  const CommandSpec spec{
      "submit", "STUDY.toml --nodes N --gpus-per-node G [--time HH:MM:SS] [--partition P] [--account A] [--dry-run] ...",
      "Writes a SLURM batch script for the study from a template (cluster/templates/NAME.sbatch: gpu_node,\n"
      "multi_node, cpu_test, or a path; default multi_node for --nodes > 1, gpu_node with GPUs, else cpu_test)\n"
      "and submits it with sbatch, or prints it with --dry-run. Placeholders: {{name}}; the list and the rank\n"
      "layout are in cluster/README.md.\n\n"
      "Rank layout: one worker rank per GPU (--workers-per-node, default --gpus-per-node) plus rank 0, the\n"
      "scheduler, which shares the first node: N x W + 1 tasks. Logs: LOGS/JOBNAME-JOBID.out, appended across\n"
      "requeues. The job is requeueable unless --no-requeue; SLURM sends USR1 --signal-lead seconds before the\n"
      "time limit (default drain_grace_s + cancel_wait_s + 60); the script forwards it to the launcher, the study\n"
      "drains, and the job requeues itself while units remain. --chain K submits K jobs with\n"
      "--dependency=singleton instead (one runs at a time; each resumes the store).\n"
      "--scratch DIR (expanded on the node, e.g. '$SLURM_TMPDIR'; when it is empty there the job warns and keeps the\n"
      "store at its shared path) keeps the live store on node-local disk and copies it to the shared path every\n"
      "--checkpoint-every seconds and at exit (run --help).\n"
      "Checked before sbatch, so that nothing waits in the queue to fail: the study file, every model's weights, the\n"
      "store (another version of the study needs --extend, which passes on to run as --retry-failed does), --time in\n"
      "sbatch's forms, and GPUs: a study whose workers use them ([run] device auto) needs --gpus-per-node unless --cpu.\n"
      "--qos, --constraint, --mem, --mem-per-gpu and --sbatch=OPTION (repeatable, any other #SBATCH line) go into the\n"
      "script; a template without their placeholder is an error."};
  SubmitArguments args;
  po::options_description options("options");
  options.add_options()("study", po::value(&args.study)->required(), "the study file")(
      "nodes", po::value(&args.nodes)->default_value(1), "nodes")(
      "gpus-per-node", po::value(&args.gpus_per_node)->default_value(0), "GPUs per node (0: CPU only)")(
      "workers-per-node", po::value(&args.workers_per_node)->default_value(0), "worker ranks per node (0: one per GPU, 1 without GPUs)")(
      "cpus-per-worker", po::value(&args.cpus_per_worker)->default_value(1), "CPUs per task")(
      "time", po::value(&args.time)->default_value("01:00:00"), "time limit as sbatch takes it: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]")(
      "partition", po::value(&args.partition), "partition (left out when not given)")(
      "account", po::value(&args.account), "account (left out when not given)")(
      "template", po::value(&args.template_name), "template name in cluster/templates/ or a path")(
      "job-name", po::value(&args.job_name), "job name (default memsweep-STUDYNAME)")(
      "logs", po::value(&args.logs), "folder of the job logs and the script (default slurm-logs/ beside the study)")(
      "db", po::value(&args.db), "the store (overrides [store] path)")(
      "signal-lead", po::value(&args.signal_lead_s), "seconds before the time limit SLURM sends USR1")(
      "no-requeue", po::bool_switch(&args.no_requeue), "not requeueable; with --chain use singleton jobs instead")(
      "chain", po::value(&args.chain)->default_value(1), "submit this many jobs with --dependency=singleton")(
      "scratch", po::value(&args.scratch), "node-local folder for the live store (run --scratch)")(
      "checkpoint-every", po::value(&args.checkpoint_every_s)->default_value(600), "seconds between copies of the scratch store")(
      "script", po::value(&args.script), "where to write the batch script (default LOGS/JOBNAME.sbatch)")(
      "dry-run", po::bool_switch(&args.dry_run), "print the script; write and submit nothing")(
      "qos", po::value(&args.qos), "quality of service (left out when not given)")(
      "constraint", po::value(&args.constraint), "node features, e.g. 'a100|h100' (left out when not given)")(
      "mem", po::value(&args.mem), "memory per node, as sbatch takes it (e.g. 200G)")(
      "mem-per-gpu", po::value(&args.mem_per_gpu), "memory per GPU, as sbatch takes it")(
      "sbatch", po::value(&args.sbatch_lines), "any other #SBATCH option, repeatable: --sbatch=--reservation=r1")(
      "extend", po::bool_switch(&args.extend), "run --extend: grow the store by what a changed study file adds")(
      "retry-failed", po::bool_switch(&args.retry_failed), "run --retry-failed: give failed units new attempts")(
      "cpu", po::bool_switch(&args.cpu), "run the workers on CPUs on purpose when the study would use GPUs");
  po::positional_options_description positional;
  positional.add("study", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;
  if (args.nodes < 1) throw Error("--nodes must be at least 1, found " + std::to_string(args.nodes));
  if (args.gpus_per_node < 0) throw Error("--gpus-per-node must be 0 or more, found " + std::to_string(args.gpus_per_node));
  if (args.chain < 1) throw Error("--chain must be at least 1, found " + std::to_string(args.chain));
  const int workers_per_node = args.workers_per_node > 0 ? args.workers_per_node : std::max(args.gpus_per_node, 1);
  const double limit = time_limit_seconds(args.time);

  // The study, its weights and its store are checked here, before the job waits in a queue.
  const PreparedStudy prepared = prepare_study(args.study, args.db.empty() ? "" : fs::absolute(args.db).string());
  const Study& study = prepared.study;
  if (study.run.device != "cpu" && args.gpus_per_node == 0 && !args.cpu)
    throw Error("the study's workers use GPUs ([run] device = \"" + study.run.device + "\") but the job asks for none: pass "
                "--gpus-per-node G, or --cpu to run on CPUs on purpose (or set [run] device = \"cpu\")");
  check_store_accepts(prepared, args.extend);
  const fs::path study_path = fs::absolute(args.study).lexically_normal();
  const std::string job_name = args.job_name.empty() ? "memsweep-" + study.name : args.job_name;
  const fs::path logs = args.logs.empty() ? study_path.parent_path() / "slurm-logs" : fs::absolute(args.logs);
  const double lead = values.count("signal-lead") ? args.signal_lead_s : study.run.drain_grace_s + study.run.cancel_wait_s + 60;
  if (limit > 0 && lead >= limit)
    log_warning("the USR1 lead (" + std::to_string(int(lead)) + " s) is not shorter than --time " + args.time +
                ": the job would drain at once; lower --signal-lead or [run] drain_grace_s");
  const fs::path cluster = cluster_dir();
  const fs::path template_file = template_path(args, cluster);

  std::string run_args = "--db " + shell_quoted(fs::absolute(study.store.path).string());
  if (args.extend) run_args += " --extend";
  if (args.retry_failed) run_args += " --retry-failed";
  if (!args.scratch.empty())  // expanded on the node by launch.sh, which falls back to the shared store when it is empty
    run_args += " $(memsweep_scratch_options " + shell_quoted(args.scratch) + " " + std::to_string(int(std::ceil(args.checkpoint_every_s))) + ")";
  std::string sbatch_lines;
  for (const std::string& line : args.sbatch_lines) {
    if (line.rfind("--", 0) != 0 && line.rfind("-", 0) != 0)
      throw Error("--sbatch '" + line + "' is not an sbatch option (e.g. --sbatch=--reservation=r1)");
    sbatch_lines += (sbatch_lines.empty() ? "" : "\n") + std::string("#SBATCH ") + line;
  }
  const TemplateValues template_values = {
      {"job_name", job_name},
      {"nodes", std::to_string(args.nodes)},
      {"gpus_per_node", args.gpus_per_node > 0 ? std::to_string(args.gpus_per_node) : ""},
      {"workers_per_node", std::to_string(workers_per_node)},
      {"workers", std::to_string(args.nodes * workers_per_node)},
      {"ntasks", std::to_string(args.nodes * workers_per_node + 1)},
      {"ranks_first_node", std::to_string(workers_per_node + 1)},
      {"cpus_per_task", std::to_string(args.cpus_per_worker)},
      {"time", args.time},
      {"partition", args.partition},
      {"account", args.account},
      {"qos", args.qos},
      {"constraint", args.constraint},
      {"mem", args.mem},
      {"mem_per_gpu", args.mem_per_gpu},
      {"sbatch_lines", sbatch_lines},
      {"logs", logs.string()},
      {"requeue", args.no_requeue ? "--no-requeue" : "--requeue"},
      {"requeue_on_drain", args.no_requeue ? "0" : "1"},
      {"signal_seconds", std::to_string(int(std::ceil(lead)))},
      {"memsweep", executable_path().string()},
      {"study", shell_quoted(study_path.string())},
      {"store", shell_quoted(fs::absolute(study.store.path).string())},
      {"run_args", run_args},
      {"cluster_dir", cluster.string()},
      {"workdir", fs::current_path().string()},
  };
  const std::string template_text = read_file(template_file.string());
  const std::pair<const char*, const char*> optional_lines[] = {
      {"qos", "--qos"}, {"constraint", "--constraint"}, {"mem", "--mem"}, {"mem_per_gpu", "--mem-per-gpu"}, {"sbatch_lines", "--sbatch"}};
  for (const auto& [name, option] : optional_lines)  // an option the template would drop is an error, not a surprise
    if (!template_values.at(name).empty() && template_text.find(std::string("{{") + name + "}}") == std::string::npos)
      throw Error(template_file.string() + " has no {{" + name + "}} placeholder, so " + option +
                  " would be ignored: add it (cluster/README.md)");
  const std::string script = render_batch_template(template_text, template_file.string(), template_values);
  if (args.dry_run) {
    std::cout << script;
    return 0;
  }
  fs::create_directories(logs);
  const fs::path script_path = args.script.empty() ? logs / (job_name + ".sbatch") : fs::absolute(args.script);
  std::ofstream(script_path) << script;
  for (int i = 0; i < args.chain; ++i) {
    std::vector<std::string> command = {"sbatch", "--parsable"};
    if (args.chain > 1) command.push_back("--dependency=singleton");
    command.push_back(script_path.string());
    const auto [status, output] = run_capturing(command);
    if (status != 0)
      throw Error(status == 127 ? "sbatch not found: is this a SLURM login node? (--dry-run prints the script)"
                                : "sbatch " + script_path.string() + " exited with status " + std::to_string(status));
    std::string job = output.substr(0, output.find_first_of(";\n"));
    std::cout << job << "\n";
    log_info("submitted job " + job + " (" + job_name + ", script " + script_path.string() + ", log " + (logs / (job_name + "-" + job + ".out")).string() + ")");
  }
  return 0;
}

}  // namespace memsweep
