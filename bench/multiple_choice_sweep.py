"""Benchmark, workload (2) of the performance issue: a full single-block multiple-choice sweep — baseline, then each
block's attention short-circuited — on PIQA (the first --docs documents of the real validation file in
../shared/data), zero-shot acc/acc_norm, run in one go by
  - the reference pipeline, written the way the paper's code works: lm-evaluation-harness 0.4.x
    (`lm_eval.simple_evaluate`, offline) with an HFLM over the in-memory transformers model (eager, float32),
    one simple_evaluate per configuration with block b's attention patched to the identity
    (tests/python/memsweep_testing.py's `reference_intervention`); the task YAML `include:`s the installed
    harness's own piqa.yaml and overrides only the data files, as tests/python/test_benchmarks.py does;
  - memsweep: `memsweep eval --task piqa:FILE --sweep` (one process; contexts shared between a document's choices,
    the layers below each intervention's first block computed once per batch), and again with `--no-reuse`.
Both sides get the same batch size (--batch: the harness's requests per batch, memsweep's documents per batch).
For every configuration both must give the same acc and acc_norm per document and per-request loglikelihoods
within 1e-4 absolute (or 1e-6 relative: one or two float32 steps of sums beyond -512), or the run stops with a
non-zero exit. Then it prints wall times (median of --repeats;
memsweep's whole process, start and model load included, and its evaluation alone from its JSON `seconds`), tokens/s,
the peak RSS of each side, the ratio memsweep / reference, the workload's FLOPs and the below-block reuse line.
The reference's model and HFLM are built, and the harness's TaskManager indexes its tasks, before its clock starts;
each simple_evaluate (task building, dataset loading from the local cache, requests, scoring) is inside it.

FLOPs (forward, analytic). A request is (context, continuation); the harness feeds T = len(context + continuation)
- 1 tokens as one row. With P_layers the parameters of the L blocks, h the width and V the vocabulary:
    F(row) = 2 * (P_layers + h * V) * T + 2 * L * h * T^2
(2 FLOPs per multiply-add per weight and token; the causal attention's QK^T and AV, each ~h * T^2 / 2 multiply-adds
per block; embedding lookups, norms and softmax neglected). The workload = (L + 1) configurations x sum over the
requests of F(row); tokens/s on both sides counts (L + 1) x sum of T (memsweep computes fewer positions, since a
document's choices share their context pass). Below-block reuse: with C_layer = sum over rows of
(2 * P_layers / L * T + 2 * h * T^2) (one block) and C_head = sum over rows of 2 * h * V * T (the output head at every
fed position, as both sides compute it), the naive sweep costs (L + 1)(L * C_layer + C_head); computing the layers
below block b once per batch costs (L * C_layer + C_head) [baseline] + sum over b of ((L - b) * C_layer + C_head);
Z = minimum / naive. W = measured evaluation seconds with reuse / (no-reuse seconds x Z): 1 when reuse saves exactly
what the FLOPs say (target <= 1.1). Two more counts say what the ratio can be: the reference as it runs (each row
padded to the longest of its batch, HFLM's longest-first batches) and the floor of memsweep's method (a document's
context computed once, no padding, the output head only at the positions that predict a continuation token, the
layers below block b once per batch); floor / reference is the ratio at equal FLOP/s.
Usage: bench/multiple_choice_sweep.py [--shape pythia-70m|pythia-160m|pythia-1.4b|tiny] [--docs 200] [--batch 32]
       [--repeats 5] [--device cpu|cuda] [--threads N] [--memsweep build/memsweep]
On demand, outside CI; needs lm-eval (tests/python/requirements.txt) and ../shared/data."""
import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from memsweep_testing import SHARED_DIR, reference_intervention  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from memorization_sweep import SHAPES, peak_rss_mb, synchronize  # noqa: E402

# memorization_sweep's shapes, but tiny keeps the real vocabulary: the GPT-NeoX-20B tokenizer's ids go up to 50,276.
SHAPES = {**SHAPES, "tiny": {**SHAPES["tiny"], "vocab_size": 50304}}
EOS = 0
TASK = "memsweep_bench_piqa"
# 1e-4 absolute, or one part in 1e6 for large sums: both sides sum a request's token log-probabilities as a float32
# tensor, and a random-init model's sums lie near -10.8 x tokens (-500 to -1500 here), where one float32 step is
# 6.1e-5 or 1.2e-4 (the rule of tests/python/test_benchmarks.py).
ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE = 1e-4, 1e-6


def write_task_yaml(directory, data_file):
    """The harness's own piqa.yaml, reading the local file (JSON is YAML)."""
    import lm_eval

    include = Path(lm_eval.__file__).resolve().parent / "tasks" / "piqa" / "piqa.yaml"
    config = {"include": str(include), "task": TASK, "dataset_path": "json", "dataset_name": None,
              "dataset_kwargs": {"data_files": {"validation": str(data_file)}}, "training_split": None,
              "validation_split": "validation", "test_split": None, "fewshot_split": None}
    directory.mkdir()
    (directory / f"{TASK}.yaml").write_text(json.dumps(config))


def configurations(layers):
    return [None] + list(range(layers))


def name_of(block):
    return "baseline" if block is None else f"short_circuit:{block}"


def quiet_hflm_class():
    """HFLM without its progress bars (it passes disable=False explicitly, so TQDM_DISABLE does not reach them)."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm=False):
            return super().loglikelihood(requests, disable_tqdm=True)

    return QuietHFLM


def reference_sweep(model, lm, task_manager, layers):
    """The paper's way: one simple_evaluate per configuration, the block patched in place."""
    import lm_eval

    samples = {}
    for block in configurations(layers):
        short = () if block is None else (block,)
        with reference_intervention(model, short):
            output = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=task_manager, log_samples=True)
        samples[name_of(block)] = sorted(output["samples"][TASK], key=lambda s: s["doc_id"])
    return samples


def run_memsweep(command, stdout_path):
    """Runs memsweep under GNU time; returns (wall seconds, its JSON on stdout, its peak RSS in MB). Not this
    process's RUSAGE_CHILDREN: Linux starts a child's ru_maxrss at its parent's high-water mark (fork copies it,
    exec keeps it), so a child of this multi-GB Python process would never report less than that."""
    err, rss = Path(str(stdout_path) + ".err"), Path(str(stdout_path) + ".rss")
    with open(stdout_path, "w") as stdout, open(err, "w") as stderr:
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *command], stdout=stdout, stderr=stderr,
                                env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"memsweep eval failed ({result.returncode}):\n{err.read_text()}")
    return seconds, json.loads(Path(stdout_path).read_text()), int(rss.read_text().split()[-1]) / 1024


def compare(reference, ours, largest):
    """Per configuration and document: acc and acc_norm equal, loglikelihoods within the tolerance."""
    problems = []
    results = {r["intervention"]: r for r in ours["results"]}
    for name, samples in reference.items():
        examples = results[name]["examples"]
        if len(examples) != len(samples):
            problems.append(f"{name}: {len(examples)} documents vs the harness's {len(samples)}")
            continue
        for example, sample in zip(examples, samples):
            for key in ("acc", "acc_norm"):
                if example["values"][key] != sample[key]:
                    problems.append(f"{name} document {sample['doc_id']}: {key} {example['values'][key]} vs "
                                    f"{sample[key]} (choice gap {example['detail'].get('choice_gap') if example['detail'] else None})")
            theirs = [float(r[0]) for r in sample["filtered_resps"]]
            facts = example["facts"]  # loglikelihood.0, loglikelihood.1, ...: one per choice
            mine = [facts[f"loglikelihood.{i}"] for i in range(sum(key.startswith("loglikelihood.") for key in facts))]
            if len(mine) != len(theirs):
                problems.append(f"{name} document {sample['doc_id']}: {len(mine)} vs {len(theirs)} choices")
                continue
            for a, b in zip(mine, theirs):
                largest[0] = max(largest[0], abs(a - b))
                largest[1] = max(largest[1], abs(a - b) / max(abs(b), 1e-30))
                if abs(a - b) > ABSOLUTE_TOLERANCE and abs(a - b) > RELATIVE_TOLERANCE * abs(b):
                    problems.append(f"{name} document {sample['doc_id']}: loglikelihood {a} vs {b}")
    if problems:
        sys.exit("memsweep and lm-evaluation-harness disagree:\n  " + "\n  ".join(problems[:20]) +
                 (f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else ""))


def documents_tokens(lm, samples):
    """Per document: its context's token count and each continuation's, tokenized as the harness does
    (_encode_pair; PIQA's requests are far below max_length, so nothing is truncated)."""
    documents = []
    for sample in samples:
        context_length, continuations = 0, []
        for arguments in sample["arguments"]:
            context, continuation = (arguments["arg_0"], arguments["arg_1"]) if isinstance(arguments, dict) else arguments[:2]
            context_ids, continuation_ids = lm._encode_pair(context, continuation)
            if len(context_ids) + len(continuation_ids) > lm.max_length + 1:
                sys.exit(f"document {sample['doc_id']} is longer than the model's {lm.max_length} positions")
            context_length = len(context_ids)
            continuations.append(len(continuation_ids))
        documents.append((context_length, continuations))
    return documents


def flop_counts(documents, layers, hidden, vocab, block_parameters, batch):
    """The analytic FLOPs of the module docstring (per block `block`, output head `head`), and two more: the
    reference as it runs (rows padded to the longest of each batch of `batch` requests, longest first, as HFLM
    batches them) and the floor of memsweep's method (a document's context once, no padding, the output head
    only at the positions that predict a continuation token, the layers below block b once)."""
    per_block = 2 * block_parameters / layers
    lengths = [c + m - 1 for c, continuations in documents for m in continuations]
    block = sum(per_block * t + 2 * hidden * t * t for t in lengths)
    head = 2 * hidden * vocab * sum(lengths)
    configs = layers + 1
    naive = configs * (layers * block + head)
    minimum = (layers * block + head) + sum((layers - b) * block + head for b in range(layers))
    ordered = sorted(lengths, reverse=True)
    padded = 0
    for start in range(0, len(ordered), batch):
        rows, longest = len(ordered[start:start + batch]), ordered[start]
        padded += rows * (layers * (per_block * longest + 2 * hidden * longest ** 2) + 2 * hidden * vocab * longest)
    floor_block = floor_head = 0
    for c, continuations in documents:
        fed = [m - 1 for m in continuations]
        floor_block += per_block * (c + sum(fed)) + 2 * hidden * c * c + sum(4 * hidden * f * c + 2 * hidden * f * f for f in fed)
        floor_head += 2 * hidden * vocab * (1 + sum(fed))
    floor = (layers * floor_block + floor_head) + sum((layers - b) * floor_block + floor_head for b in range(layers))
    return dict(tokens=configs * sum(lengths), requests=len(lengths), fed=sum(lengths), longest=max(lengths),
                per_configuration=layers * block + head, head=head, workload=naive, z=minimum / naive,
                reference_padded=configs * padded, floor=floor)


def write_workload(work, shape, docs, device):
    """The random-init model of `shape` (seed 0) with the GPT-NeoX-20B tokenizer in work/model, and the first `docs`
    PIQA documents in work/piqa.jsonl; returns (config, model folder, data file)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    piqa, tokenizer_file = SHARED_DIR / "data" / "piqa" / "validation.jsonl", SHARED_DIR / "data" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"
    if not piqa.exists() or not tokenizer_file.exists():
        sys.exit(f"{piqa} or {tokenizer_file} is absent: the shared/ data folder must be beside this clone "
                 "(or MEMSWEEP_SHARED_DIR point at it)")
    torch.manual_seed(0)
    config = GPTNeoXConfig(**SHAPES[shape], max_position_embeddings=2048, rotary_pct=0.25, eos_token_id=EOS,
                           bos_token_id=EOS)
    model_dir = work / "model"
    with torch.device(device):
        GPTNeoXForCausalLM(config).save_pretrained(model_dir)
    shutil.copy(tokenizer_file, model_dir / "tokenizer.json")
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    lines = piqa.read_text(encoding="utf-8").splitlines(keepends=True)[:docs]
    data_file = work / "piqa.jsonl"
    data_file.write_text("".join(lines), encoding="utf-8")
    return config, model_dir, data_file


def memsweep_command(memsweep, model_dir, data_file, batch, device, out):
    return [memsweep, "eval", "--model", str(model_dir), "--task", f"piqa:{data_file}", "--sweep", "--batch-size", str(batch),
            "--device", device if device != "cuda" else "cuda:0", "--out", str(out)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="pythia-70m", choices=list(SHAPES))
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads of both sides (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="memsweep-bench-mc-"))
    os.environ["HF_DATASETS_CACHE"] = str(work / "datasets-cache")  # read when datasets is imported
    if not Path("/usr/bin/time").exists():
        sys.exit("/usr/bin/time (GNU time, Debian package time) is needed to measure memsweep's peak RSS")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        sys.exit("lm-eval is not installed (tests/python/requirements.txt)")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, model_dir, data_file = write_workload(work, args.shape, args.docs, args.device)
    write_task_yaml(work / "tasks", data_file)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").to(args.device).eval()
    lm = quiet_hflm_class()(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(model_dir), batch_size=args.batch,
              device=args.device)
    task_manager = TaskManager(include_path=str(work / "tasks"))
    layers = config.num_hidden_layers
    command = memsweep_command(args.memsweep, model_dir, data_file, args.batch, args.device, work / "memsweep.json")

    threads = torch.get_num_threads()
    reference_times, memsweep_times, evaluation_times, no_reuse_times, no_reuse_evaluation_times = [], [], [], [], []
    memsweep_rss = no_reuse_rss = 0.0
    largest = [0.0, 0.0]  # absolute, relative
    for repeat in range(args.repeats):
        synchronize()
        start = time.perf_counter()
        reference = reference_sweep(model, lm, task_manager, layers)
        synchronize()
        reference_times.append(time.perf_counter() - start)
        seconds, summary, rss = run_memsweep(command, work / "stdout.json")
        memsweep_times.append(seconds)
        evaluation_times.append(summary["seconds"]["evaluation"])
        memsweep_rss = max(memsweep_rss, rss)
        compare(reference, json.loads((work / "memsweep.json").read_text()), largest)
        seconds, summary, rss = run_memsweep(command + ["--no-reuse"], work / "stdout-no-reuse.json")
        no_reuse_times.append(seconds)
        no_reuse_evaluation_times.append(summary["seconds"]["evaluation"])
        no_reuse_rss = max(no_reuse_rss, rss)
        compare(reference, json.loads((work / "memsweep.json").read_text()), largest)
        print(f"repeat {repeat + 1}/{args.repeats}: reference {reference_times[-1]:.2f} s, memsweep {memsweep_times[-1]:.2f} s "
              f"(evaluation {evaluation_times[-1]:.2f} s), --no-reuse {no_reuse_times[-1]:.2f} s "
              f"(evaluation {no_reuse_evaluation_times[-1]:.2f} s)", flush=True)

    configs = layers + 1
    flops = flop_counts(documents_tokens(lm, reference["baseline"]), layers, config.hidden_size, config.vocab_size,
                        sum(p.numel() for p in model.gpt_neox.layers.parameters()), args.batch)
    tokens, workload, z = flops["tokens"], flops["workload"], flops["z"]

    ref, ms = statistics.median(reference_times), statistics.median(memsweep_times)
    ms_evaluation = statistics.median(evaluation_times)
    no_reuse, no_reuse_evaluation = statistics.median(no_reuse_times), statistics.median(no_reuse_evaluation_times)
    baseline = {r["intervention"]: r["metrics"] for r in json.loads((work / "memsweep.json").read_text())["results"]}
    print(f"shape {args.shape}, PIQA: {args.docs} documents, {flops['requests']} requests, {flops['fed']} tokens fed per "
          f"configuration (longest {flops['longest']}), {configs} configurations, batch {args.batch}, {args.device} float32, "
          f"{threads} CPU threads, median of {args.repeats}")
    print("acc per configuration (both): " + ", ".join(f"{k}={v['acc']:.3f}" for k, v in baseline.items()))
    print(f"reference (lm-eval {lm_eval.__version__} simple_evaluate per configuration, HFLM, eager fp32): {ref:.2f} s, "
          f"{tokens / ref:.0f} tokens/s, peak RSS {peak_rss_mb():.0f} MB")
    print(f"memsweep eval --sweep: {ms:.2f} s, {tokens / ms:.0f} tokens/s, peak RSS {memsweep_rss:.0f} MB "
          f"(whole process; the evaluation alone {ms_evaluation:.2f} s, ratio {ms_evaluation / ref:.3f})")
    print(f"largest |loglikelihood difference| {largest[0]:.3g} (relative {largest[1]:.3g}) over {configs} configurations x "
          f"{flops['requests']} requests; "
          f"acc and acc_norm equal for every document")
    print(f"ratio memsweep / reference: {ms / ref:.3f} (target <= 0.33)")
    print(f"FLOPs (forward, analytic): {workload / 1e12:.3f} TFLOP = {configs} x {flops['per_configuration'] / 1e9:.1f} "
          f"GFLOP; output head {flops['head'] / flops['per_configuration']:.0%} of a configuration; reference "
          f"{workload / ref / 1e9:.1f} GFLOP/s, memsweep {workload / ms_evaluation / 1e9:.1f} GFLOP/s (evaluation alone)")
    print(f"FLOPs as computed: the reference with its padding {flops['reference_padded'] / 1e12:.3f} TFLOP; the floor of "
          f"memsweep's method (contexts shared, no padding, output head only where a token is predicted, layers below "
          f"b once) {flops['floor'] / 1e12:.3f} TFLOP = {flops['floor'] / flops['reference_padded']:.3f} x the "
          f"reference's: at equal FLOP/s that is the best ratio")
    print(f"reuse: measured {ms_evaluation:.2f} s vs no-reuse {no_reuse_evaluation:.2f} s (evaluation alone; whole "
          f"process {ms:.2f} s vs {no_reuse:.2f} s, peak RSS {memsweep_rss:.0f} vs {no_reuse_rss:.0f} MB); analytic "
          f"minimum/naive = {z:.3f}; measured/(naive-time x Z) = {ms_evaluation / (no_reuse_evaluation * z):.3f} "
          f"(target <= 1.1)")


if __name__ == "__main__":
    main()
