// memsweep select-memorized: mines a memorization set. Cuts a token corpus into windows of prefix + suffix tokens and
// keeps those whose suffix the model (baseline, greedy, EOS masked as in the paper) reproduces exactly, with where each
// came from. Streams the corpus (worker/tasks/corpus_windows.h), takes one part of it (--part K/N: a SLURM array
// divides a shard) and resumes where a killed run stopped.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/model_options.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/scheduler/progress.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/base/log.h"
#include "worker/tasks/corpus_windows.h"
#include "worker/tasks/kinds.h"
#include "worker/tokenizer/tokenizer.h"

namespace po = boost::program_options;

namespace memsweep {

namespace {

// "K/N" -> (K, N), 1 <= K <= N.
std::pair<int64_t, int64_t> parse_part(const std::string& text) {
  const size_t slash = text.find('/');
  try {
    if (slash != std::string::npos) {
      size_t used = 0;
      const int64_t k = std::stoll(text.substr(0, slash), &used);
      if (used == slash) {
        const std::string rest = text.substr(slash + 1);
        const int64_t n = std::stoll(rest, &used);
        if (used == rest.size() && k >= 1 && k <= n) return {k, n};
      }
    }
  } catch (const std::exception&) {
  }
  throw Error("--part '" + text + "' is not K/N with 1 <= K <= N (e.g. 3/8: the third of eight parts)");
}

// Appends and flushes to disk: what the progress file says is written is on the disk.
void write_durably(const std::string& path, const std::string& text, bool append) {
  {
    std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw Error("error while writing " + path + " (disk full?)");
  }
  std::FILE* file = std::fopen(path.c_str(), "r");
  if (!file || fsync(fileno(file)) != 0) throw Error("cannot flush " + path + " to disk");
  std::fclose(file);
}

// The run's identity: a resume must be the same command over the same input.
nlohmann::json run_identity(const std::string& input, int64_t prefix, int64_t suffix, int64_t stride, const std::string& part,
                            int64_t windows, bool allow_eos, const std::string& keep, const ModelOptions& model) {
  return {{"input", std::filesystem::absolute(input).string()}, {"input_bytes", std::filesystem::file_size(input)},
          {"prefix", prefix}, {"suffix", suffix}, {"stride", stride}, {"part", part}, {"windows", windows}, {"keep", keep},
          {"allow_eos", allow_eos}, {"model", std::filesystem::absolute(model.model_dir).string()},
          {"short_circuit", model.short_circuit}, {"zero_attention", model.zero_attention}};
}

}  // namespace

int select_memorized_command(const Arguments& args) {
  const CommandSpec spec{
      "select-memorized", "--model DIR --input TOKENS --out FILE.jsonl [--part K/N] [options]",
      "Keeps the windows of a token corpus whose suffix the model reproduces exactly (greedy, EOS masked unless\n"
      "--allow-eos; any --short-circuit/--zero-attention applies), or with --keep not-memorized those it does not: a\n"
      "control set of the same shape and source (--limit caps the windows examined). TOKENS: a raw stream of\n"
      "little-endian uint16/uint32 ids (.u16/.u32, or --format) as Pythia's Pile shards are distributed, .npy (2-D) or .jsonl rows\n"
      "{\"tokens\": [...]} or {\"text\": ...} (with the model's tokenizer). Each row (the stream is one) is cut into\n"
      "windows of prefix + suffix tokens starting every --stride tokens; the corpus is read as windows are, so memory\n"
      "is the model's and a batch's, whatever the file's size. Output: one JSON line per kept window, {\"tokens\": [...],\n"
      "\"row\": R, \"offset\": O} (row: the input line / npy row, -1 for a stream; offset: the window's first token in it)\n"
      "— the format `memsweep eval --task memorization:FILE` reads — in window order.\n"
      "--part K/N examines the K-th of N equal ranges of the windows (a SLURM array over one shard: the parts' outputs,\n"
      "concatenated in order, are the whole run's). Resume: FILE.partial and FILE.progress (how many windows were\n"
      "examined, what is written) are kept while it runs; rerunning the same command continues after the last batch\n"
      "recorded (a killed run loses at most one batch and never writes a window twice); at the end FILE replaces the\n"
      "partial file and FILE.progress says it is complete, so that a rerun has nothing to do.\n"
      "Pythia's training data are sequences of 2049 tokens laid end to end in the shards: --stride 2049 starts a window\n"
      "at every sequence's first token (README: Mining)."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string input, out_path, format, part_text = "1/1", keep = "memorized";
  int64_t prefix = 32, suffix = 32, stride = 0, limit = -1;
  int batch_size = 16;
  double progress_every_s = 30;
  options.add_options()
      ("input", po::value(&input)->required(), "token corpus (.u16, .u32, .npy, .jsonl)")
      ("out", po::value(&out_path)->required(), "JSONL file of the kept windows")
      ("prefix", po::value(&prefix)->default_value(32), "prefix tokens")
      ("suffix", po::value(&suffix)->default_value(32), "suffix tokens that must be reproduced")
      ("stride", po::value(&stride), "tokens between window starts (default: prefix + suffix, no overlap)")
      ("part", po::value(&part_text)->default_value("1/1"), "K/N: examine the K-th of N equal ranges of the windows")
      ("limit", po::value(&limit), "examine at most this many windows (of the part)")
      ("format", po::value(&format), "raw stream element type: uint16 or uint32")
      ("keep", po::value(&keep)->default_value("memorized"),
       "memorized: the windows whose suffix is reproduced exactly; not-memorized: the others (a control set)")
      ("allow-eos", "let greedy decoding choose the end-of-sequence token")
      ("batch-size", po::value(&batch_size)->default_value(16), "windows per forward pass")
      ("progress-every", po::value(&progress_every_s)->default_value(30), "seconds between progress lines");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (prefix < 1 || suffix < 1 || batch_size < 1) throw Error("--prefix, --suffix and --batch-size must be at least 1");
  if (keep != "memorized" && keep != "not-memorized")
    throw Error("--keep '" + keep + "' is not memorized or not-memorized");
  const double kept_exact_match = keep == "memorized" ? 1.0 : 0.0;
  if (!values.count("stride")) stride = prefix + suffix;
  if (stride < 1) throw Error("--stride must be at least 1");
  const auto [part, parts] = parse_part(part_text);

  // The corpus before the weights: a malformed input fails at once.
  const std::string tokenizer_path = model_tokenizer_path(model_options.model_dir, "");
  std::optional<Tokenizer> tokenizer;
  if (!tokenizer_path.empty()) tokenizer = Tokenizer::load(tokenizer_path);
  const ModelSize size = read_model_size(model_options.model_dir);
  auto corpus = CorpusWindows::open(input, format, size.vocab, text_encoder(tokenizer ? &*tokenizer : nullptr), prefix + suffix, stride);
  const int64_t all = corpus->count();
  const int64_t begin = all * (part - 1) / parts;
  int64_t end = all * part / parts;
  if (limit >= 0) end = std::min(end, begin + limit);

  // Resume: the progress file names what was examined and how much of the partial output it covers.
  const std::string partial = out_path + ".partial", progress_path = out_path + ".progress";
  const nlohmann::json identity = run_identity(input, prefix, suffix, stride, part_text, end - begin, values.count("allow-eos") > 0,
                                               keep, model_options);
  int64_t next = begin, kept = 0;
  auto summary = [&] {
    std::cout << nlohmann::json{{"windows", end - begin}, {"kept", kept}, {"out", out_path}, {"part", part_text},
                                {"first_window", begin}}.dump() << "\n";
    return 0;
  };
  if (std::filesystem::exists(progress_path)) {
    const nlohmann::json progress = read_json_file(progress_path);
    nlohmann::json recorded = progress.value("run", nlohmann::json());
    if (recorded.is_object() && !recorded.contains("keep")) recorded["keep"] = "memorized";  // written before --keep existed
    if (recorded != identity)
      throw Error(progress_path + " records another run (" + recorded.dump() + "; this one is " +
                  identity.dump() + "): give another --out, or delete " + progress_path + " and " + partial + " to start afresh");
    kept = progress.at("kept").get<int64_t>();
    if (progress.value("complete", false) && std::filesystem::exists(out_path)) {  // a requeued job that had finished
      log_info(out_path + " is complete (" + progress_path + "): nothing to do");
      return summary();
    }
    next = begin + progress.at("examined").get<int64_t>();
    std::filesystem::resize_file(partial, progress.at("bytes").get<uint64_t>());  // a batch written after the record goes
    log_info("resuming " + out_path + ": " + std::to_string(next - begin) + " of " + std::to_string(end - begin) +
             " windows examined, " + std::to_string(kept) + " kept");
  } else {
    if (std::filesystem::exists(out_path))
      throw Error(out_path + " exists and " + progress_path + " does not say how it was made: give another --out, or move "
                  "it away to mine again");
    write_durably(partial, "", false);
  }
  auto record = [&](int64_t examined, bool complete = false) {
    const nlohmann::json progress = {{"run", identity}, {"examined", examined}, {"kept", kept}, {"complete", complete},
                                     {"bytes", std::filesystem::file_size(complete ? out_path : partial)}};
    write_durably(progress_path + ".new", progress.dump() + "\n", false);
    std::filesystem::rename(progress_path + ".new", progress_path);
  };
  if (next == begin) record(0);

  auto model = load_model_with_interventions(model_options);
  MemorizationOptions memorization;
  memorization.prefix = prefix;
  memorization.suffix = suffix;
  memorization.mask_eos = !values.count("allow-eos");
  log_info("examining windows " + std::to_string(next) + " to " + std::to_string(end) + " of " + std::to_string(all) + " (part " +
           part_text + ") of " + std::to_string(prefix) + " + " + std::to_string(suffix) + " tokens every " + std::to_string(stride) +
           " from " + input);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto last_line = start;
  const int64_t resumed_at = next;
  while (next < end) {
    const int64_t count = std::min<int64_t>(batch_size, end - next);
    std::vector<std::vector<int64_t>> rows;
    std::vector<CorpusWindows::Window> windows;
    std::vector<int64_t> index;
    for (int64_t i = 0; i < count; ++i) {
      windows.push_back(corpus->at(next + i));
      rows.push_back(windows.back().tokens);
      index.push_back(i);
    }
    ShardResult result;
    evaluate_memorization(*model, rows, index, 0, count, memorization, result);
    std::string lines;
    for (const auto& example : result.examples) {
      if (example.values.at("exact_match") != kept_exact_match) continue;
      const auto& window = windows[size_t(example.index)];
      lines += nlohmann::json{{"tokens", window.tokens}, {"row", window.row}, {"offset", window.offset}}.dump() + "\n";
      ++kept;
    }
    write_durably(partial, lines, true);
    next += count;
    record(next - begin);
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_line).count() >= progress_every_s || next == end) {
      const double seconds = std::chrono::duration<double>(now - start).count(), rate = double(next - resumed_at) / seconds;
      log_info(std::to_string(next - begin) + "/" + std::to_string(end - begin) + " windows examined (" +
               std::to_string(int(100.0 * double(next - begin) / double(std::max<int64_t>(end - begin, 1)))) + "%), " +
               std::to_string(kept) + " kept | " + std::to_string(int64_t(rate)) + " windows/s | ETA " +
               format_duration(rate > 0 ? double(end - next) / rate : -1));
      last_line = now;
    }
  }
  std::filesystem::rename(partial, out_path);
  record(end - begin, /*complete=*/true);  // kept: a rerun (a requeued array task) finds the work done
  log_info("kept " + std::to_string(kept) + " of " + std::to_string(end - begin) + " windows in " + out_path);
  return summary();
}

}  // namespace memsweep
