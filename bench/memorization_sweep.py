"""Benchmark, workload (1) of the performance issue: a full single-block memorization sweep — baseline, then each
block's attention short-circuited — with EM/TA/CE on 32 + 32-token rows built from the model's own greedy
continuations (like the paper's filtered GPT-Neo set: baseline EM = 1), run in one go by
  - the reference pipeline, written the way the paper's code works: transformers (eager, float32) with the
    attention of block b patched to the identity, `generate(do_sample=False, min_new_tokens=32,
    max_new_tokens=32)` for EM/TA and a teacher-forced forward for CE, batch by batch;
  - memsweep: `memsweep eval --task memorization:... --sweep` (one process, lower layers reused).
It checks both produced the same metrics, then prints wall time, tokens/s, peak RSS and the ratio.
The set is built from the reference model's own greedy continuations (transformers `generate`), so the
reference's baseline EM is 1. In float32 both sides must give the same metrics (EM/TA equal, CE within 1e-5
relative) or the run stops; in bfloat16/float16 (GPU runs, bench/gpu.sh) two implementations round differently,
so the largest differences are printed instead. In every dtype, each row whose greedy suffix differs from the
reference's generate must differ first where memsweep recorded a top-two gap below EPSILON (the method's equality
rule: a near-tie), or the run ends with a non-zero exit after printing its numbers. memsweep's time is its whole
process (start, model load, CUDA initialisation included); the reference's model is loaded, and CUDA initialised,
before its clock starts: "the evaluation alone" (memsweep's JSON `seconds`) is the like-for-like figure there.
Two workloads (`--workload`):
  worst  the random-init model as it is: every short-circuited block's EM is 0, so every configuration decodes
         31 tokens per row — the worst case for memsweep's teacher-forced shortcut;
  paper  the paper's shape: each block's attention output projection (`attention.dense`, weight and bias) scaled by
         a factor calibrated (before any clock starts) so that short-circuiting that block alone keeps the EM the
         paper digitized for GPT-Neo-1.3B at the same relative depth (reference/method.md: block b of L at
         (b + 0.5) / L, linear between the digitized blocks), within 0.1 at every block; rows are the calibrated
         model's own greedy continuations. Its rows keep much of their suffix under most blocks, as the paper's do.
Both print, per configuration, EM and the mean tokens each side decodes per row (what drives the cost); `--record
FILE` appends the run's numbers as a JSON line (bench/measurements.jsonl is what bench/projection.py reads).
Usage: bench/memorization_sweep.py [--shape pythia-70m|pythia-160m|pythia-1.4b|tiny] [--workload worst|paper]
       [--rows 64] [--batch 32] [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16|float16]
       [--memsweep build/memsweep] [--record FILE]
On demand, outside CI."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from memsweep_testing import reference_intervention  # noqa: E402

SHAPES = {
    "pythia-70m": dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048),
    "pythia-160m": dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "pythia-1.4b": dict(vocab_size=50304, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
}
PREFIX = SUFFIX = 32
EOS = 0

# GPT-Neo-1.3B, one block short-circuited (blocks numbered from 1 of 24) -> EM, digitized from the paper's figure
# (../shared/reference/method.md, "The paper's numbers").
PAPER_EM = {1: 0.04, 2: 0.01, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 10: 0.01, 16: 0.16, 22: 0.38, 23: 0.48, 24: 0.73}
PAPER_BLOCKS = 24
TOLERANCE = 0.1  # the issue's |EM - paper| bound at every block


def paper_em(block, layers):
    """The paper's EM for block `block` (from 0) of a `layers`-block model, by relative depth, linear between the
    digitized blocks (one to one for 24 blocks)."""
    position = (block + 0.5) / layers * PAPER_BLOCKS + 0.5  # the 1-based block of the 24 at the same depth
    known = sorted(PAPER_EM)
    if position <= known[0]:
        return PAPER_EM[known[0]]
    if position >= known[-1]:
        return PAPER_EM[known[-1]]
    upper = next(k for k in known if k >= position)
    lower = max(k for k in known if k <= position)
    if upper == lower:
        return PAPER_EM[lower]
    return PAPER_EM[lower] + (PAPER_EM[upper] - PAPER_EM[lower]) * (position - lower) / (upper - lower)


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reference_sweep(model, rows, batch):
    """The paper's way: per configuration, generate the suffix from the prefix, then one forward for CE. Returns the
    metrics and the generated suffixes, per configuration."""
    layers = model.config.num_hidden_layers
    device = model.device
    metrics, generations = {}, {}
    for block in [None] + list(range(layers)):
        short = () if block is None else (block,)
        em = ta = ce = 0.0
        generated_rows = []
        with reference_intervention(model, short), torch.no_grad():
            for start in range(0, len(rows), batch):
                chunk = torch.tensor(rows[start:start + batch], device=device)
                prefix, suffix = chunk[:, :PREFIX], chunk[:, PREFIX:]
                generated = model.generate(prefix, attention_mask=torch.ones_like(prefix), do_sample=False,
                                           min_new_tokens=SUFFIX, max_new_tokens=SUFFIX, pad_token_id=EOS)[:, PREFIX:]
                generated_rows += generated.tolist()
                em += (generated == suffix).all(-1).sum().item()
                ta += (generated == suffix).float().mean(-1).sum().item()
                logits = model(chunk[:, :-1]).logits[:, PREFIX - 1:].float()
                logits[..., EOS] = float("-inf")
                log_p = torch.log_softmax(logits, -1)
                ce += -(log_p.exp() * torch.nan_to_num(log_p, neginf=0.0)).sum((-1, -2)).sum().item()
        name = "baseline" if block is None else f"short_circuit:{block}"
        metrics[name] = dict(exact_match=em / len(rows), token_accuracy=ta / len(rows), completion_entropy=ce / len(rows))
        generations[name] = generated_rows
    return metrics, generations


# The method's equality rule: a greedy token may differ between two implementations only where the recorded top-two
# gap is below EPSILON. float32: the parity tests' 1e-4. In 16-bit dtypes the two sides' logits differ by several of
# the dtype's rounding steps at the logits' magnitude (2-4 for a random-init Pythia: a bf16 step is 2^-6 there; the
# 2026-11-28 GPU run saw logits differ by up to 0.068 at the 1.4b shape), and a flip needs the top two to move apart
# by twice that: 16 such steps.
EPSILON = {"float32": 1e-4, "bfloat16": 16 * 2.0**-6, "float16": 16 * 2.0**-9}


def first_differences(examples, generations):
    """Per configuration, memsweep's recorded top-two gap where its greedy suffix first differs from the reference's
    generate, for each row where they differ (later tokens follow from different inputs: not compared)."""
    gaps = {}
    for name, rows in examples.items():
        gaps[name] = []
        for example in rows:
            ours, theirs = example["detail"]["continuation"], generations[name][example["index"]]
            j = next((j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
            if j is not None:
                gaps[name].append(example["detail"]["top2_gap"][j])
    return gaps


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_flops(config):
    """Per token: 2 x the parameters of the layers (matmuls; attention scores left out: <= 64 tokens here) and of
    the output head."""
    d, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * (4 * d * d + 2 * d * inner)
    return per_layer, layers, 2 * d * config.vocab_size


def reference_flops(config, rows):
    """transformers' generate (prefill of the prefix, the head at its last position only, then S - 1 decode steps)
    plus a teacher-forced pass with the head at every position, per configuration."""
    per_layer, layers, head = forward_flops(config)
    per_row = layers * per_layer * (PREFIX + SUFFIX - 1) + head * SUFFIX + (layers * per_layer + head) * (PREFIX + SUFFIX - 1)
    return (layers + 1) * rows * per_row


def memsweep_minimum_flops(config, examples_per_configuration):
    """What memsweep must compute: a baseline pass with the head on suffix positions; per short-circuited block b,
    layers b.. again with the head on suffix positions; decode steps only after each row's first mismatch."""
    per_layer, layers, head = forward_flops(config)
    total = 0
    for name, examples in examples_per_configuration.items():
        first = 0 if name == "baseline" else int(name.split(":")[1])
        for e in examples:
            total += (layers - first) * per_layer * (PREFIX + SUFFIX - 1) + head * SUFFIX
            m = int(e["values"]["match_length"])
            total += max(0, SUFFIX - 1 - m) * (layers * per_layer + head)
    return total


def memsweep_eval(memsweep, model_dir, rows_file, out, batch, *arguments, device="cpu", dtype="float32"):
    result = subprocess.run([memsweep, "eval", "--model", model_dir, "--task", f"memorization:{rows_file}", "--option",
                             f"prefix={PREFIX}", "--batch-size", str(batch), "--device", device, "--dtype", dtype, *arguments,
                             "--out", out], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memsweep eval failed:\n{result.stderr}")
    return json.loads(Path(out).read_text())["results"]


def greedy_rows(memsweep, model_dir, prefixes, work, batch, device, dtype):
    """The model's own greedy 32-token continuations of `prefixes`, through memsweep (the same tokens as transformers'
    generate in float32: the run below checks it)."""
    seeds = work / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"tokens": p + [1] * SUFFIX}) + "\n" for p in prefixes))
    examples = memsweep_eval(memsweep, model_dir, seeds, work / "seeds.json", batch, "--intervention", "baseline",
                             device=device, dtype=dtype)[0]["examples"]
    return [prefixes[e["index"]] + e["detail"]["continuation"] for e in sorted(examples, key=lambda e: e["index"])]


def calibrate(model, model_dir, prefixes, work, args):
    """Scales each block's attention output projection until short-circuiting that block alone gives the paper's EM
    at its relative depth (within TOLERANCE / 2, to keep a margin): bisection on the log of each block's factor,
    rounds of (save, regenerate the rows, sweep), since a block's factor changes the baseline and so every row.
    Returns the factors, the rows and the last sweep's EM per block."""
    layers = model.config.num_hidden_layers
    targets = [paper_em(b, layers) for b in range(layers)]
    originals = [(layer.attention.dense.weight.detach().clone(), layer.attention.dense.bias.detach().clone())
                 for layer in model.gpt_neox.layers]
    low, high = [-4.0] * layers, [2.0] * layers  # log10 of the factor: attention 10^-4 .. 100 times as strong
    factors = [0.0] * layers  # log10
    for round_ in range(1, 16):
        with torch.no_grad():
            for b, layer in enumerate(model.gpt_neox.layers):
                layer.attention.dense.weight.copy_(originals[b][0] * 10 ** factors[b])
                layer.attention.dense.bias.copy_(originals[b][1] * 10 ** factors[b])
        model.save_pretrained(model_dir)
        rows = greedy_rows(args.memsweep, model_dir, prefixes, work, args.batch, args.device, args.dtype)
        (work / "set.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
        results = memsweep_eval(args.memsweep, model_dir, work / "set.jsonl", work / "calibration.json", args.batch, "--sweep",
                                device=args.device, dtype=args.dtype)
        em = [next(r for r in results if r["intervention"] == f"short_circuit:{b}")["metrics"]["exact_match"] for b in range(layers)]
        print(f"calibration round {round_}: EM " + " ".join(f"{e:.2f}" for e in em) + " | target " +
              " ".join(f"{t:.2f}" for t in targets) + " | log10 factor " + " ".join(f"{f:+.2f}" for f in factors), flush=True)
        if all(abs(e - t) <= TOLERANCE / 2 for e, t in zip(em, targets)):
            return [10 ** f for f in factors], rows, em, targets
        for b in range(layers):
            if abs(em[b] - targets[b]) <= TOLERANCE / 2:
                continue
            if em[b] > targets[b]:  # too much survives: this block's attention must matter more
                low[b] = factors[b]
            else:
                high[b] = factors[b]
            factors[b] = (low[b] + high[b]) / 2
    sys.exit("calibration did not reach the paper's profile within 15 rounds")


def write_workload(args, work):
    """The random-init model (seed 0; for --workload paper, calibrated) in work/model and the rows of its own greedy
    continuations in work/set.jsonl; returns (config, the transformers model, rows, factors, targets)."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = GPTNeoXConfig(**SHAPES[args.shape], max_position_embeddings=2048, rotary_pct=0.25, eos_token_id=EOS,
                           bos_token_id=EOS)
    with torch.device(args.device):  # a 1.4B model initialises in seconds on a GPU, minutes on a CPU
        GPTNeoXForCausalLM(config).to(dtype).save_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=dtype, attn_implementation="eager").to(args.device).eval()
    prefixes = torch.randint(1, config.vocab_size, (args.rows, PREFIX), generator=torch.Generator().manual_seed(1))
    factors, targets = None, None
    if args.workload == "paper":
        factors, _, _, targets = calibrate(model, work / "model", prefixes.tolist(), work, args)
    rows = []  # the reference's own greedy continuations (of the calibrated model for the paper workload)
    with torch.no_grad():
        for start in range(0, args.rows, args.batch):
            prefix = prefixes[start:start + args.batch].to(args.device)
            generated = model.generate(prefix, attention_mask=torch.ones_like(prefix), do_sample=False, min_new_tokens=SUFFIX,
                                       max_new_tokens=SUFFIX, pad_token_id=EOS)
            rows += generated.tolist()
    (work / "set.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    return config, model, rows, factors, targets


def sweep_command(args, work, out):
    """memsweep's side: `eval --sweep` over work/set.jsonl."""
    return [args.memsweep, "eval", "--model", work / "model", "--task", f"memorization:{work / 'set.jsonl'}", "--option",
            f"prefix={PREFIX}", "--batch-size", str(args.batch), "--sweep", "--device",
            args.device if args.device != "cuda" else "cuda:0", "--dtype", args.dtype, "--out", out]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="pythia-70m", choices=list(SHAPES))
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--workload", default="worst", choices=["worst", "paper"])
    parser.add_argument("--record", help="append the run's numbers as a JSON line to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memsweep-bench-"))
    config, model, rows, factors, targets = write_workload(args, work)

    threads = torch.get_num_threads()
    reference_times, memsweep_times, memsweep_evaluation_times = [], [], []
    largest = {"exact_match": 0.0, "token_accuracy": 0.0, "completion_entropy (relative)": 0.0}
    for _ in range(args.repeats):
        synchronize()
        start = time.perf_counter()
        reference, generations = reference_sweep(model, rows, args.batch)
        synchronize()
        reference_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        # /usr/bin/time for the peak RSS: getrusage's children figure counts the forked Python image before exec.
        out = subprocess.run(["/usr/bin/time", "-f", "%M", *sweep_command(args, work, work / "examples.json")],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if out.returncode != 0:
            sys.exit(f"memsweep eval failed:\n{out.stderr}")
        memsweep_times.append(time.perf_counter() - start)
        memsweep_peak_mb = int(out.stderr.strip().splitlines()[-1]) / 1024
        memsweep_evaluation_times.append(json.loads(out.stdout)["seconds"]["evaluation"])
        ours = {r["intervention"]: r["metrics"] for r in json.loads(out.stdout)["results"]}
        for name, theirs in reference.items():
            for key in ("exact_match", "token_accuracy"):
                largest[key] = max(largest[key], abs(ours[name][key] - theirs[key]))
            largest["completion_entropy (relative)"] = max(largest["completion_entropy (relative)"], abs(
                ours[name]["completion_entropy"] - theirs["completion_entropy"]) / max(abs(theirs["completion_entropy"]), 1e-12))
    exact = largest["exact_match"] < 1e-9 and largest["token_accuracy"] < 1e-9 and largest["completion_entropy (relative)"] <= 1e-5
    examples = {r["intervention"]: r["examples"] for r in json.loads((work / "examples.json").read_text())["results"]}
    if args.dtype == "float32" and not exact:
        sys.exit(f"memsweep and the reference disagree: largest differences {largest}")
    flips = first_differences(examples, generations)
    flip_gaps = [g for gaps in flips.values() for g in gaps]
    epsilon = EPSILON[args.dtype]
    excused = all(g < epsilon for g in flip_gaps)
    configs = config.num_hidden_layers + 1
    tokens = configs * args.rows * (PREFIX + SUFFIX)
    ref, ms = statistics.median(reference_times), statistics.median(memsweep_times)
    gpu = ""
    if args.device.startswith("cuda"):
        gpu = f", reference peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(f"shape {args.shape}, {args.rows} rows x {PREFIX}+{SUFFIX} tokens, {configs} configurations, {args.device} "
          f"{args.dtype}, {threads} CPU threads, median of {args.repeats}")
    print(f"workload {args.workload}" + (f": attention output scaled per block by " + ", ".join(f"{f:.3g}" for f in factors)
                                         if factors else ""))
    print(f"{'configuration':<18} {'EM reference':>12} {'EM memsweep':>12} {'paper EM':>9} {'decoded/row: reference':>23} {'memsweep':>9}")
    decoded = {}
    for name, theirs in reference.items():
        block = None if name == "baseline" else int(name.split(":")[1])
        paper = 1.0 if block is None else paper_em(block, config.num_hidden_layers)
        # transformers' generate: a prefill and 31 cached steps for every row; memsweep decodes after the first mismatch.
        decoded[name] = statistics.mean(max(0, SUFFIX - 1 - int(e["values"]["match_length"])) for e in examples[name])
        print(f"{name:<18} {theirs['exact_match']:>12.2f} {ours[name]['exact_match']:>12.2f} {paper:>9.2f} {SUFFIX - 1:>23} "
              f"{decoded[name]:>9.1f}")
    if targets:
        off = max(abs(ours[f"short_circuit:{b}"]["exact_match"] - t) for b, t in enumerate(targets))
        print(f"largest |EM - paper| over the blocks: {off:.3f} (bound {TOLERANCE})")
    print(f"reference (transformers + generate): {ref:.2f} s, {tokens / ref:.0f} tokens/s, peak RSS {peak_rss_mb():.0f} MB{gpu}")
    ms_evaluation = statistics.median(memsweep_evaluation_times)
    print(f"memsweep eval --sweep:               {ms:.2f} s, {tokens / ms:.0f} tokens/s, peak RSS {memsweep_peak_mb:.0f} MB "
          f"(whole process; the evaluation alone {ms_evaluation:.2f} s, ratio {ms_evaluation / ref:.3f})")
    print(f"largest differences: " + ", ".join(f"{k} {v:.3g}" for k, v in largest.items()) +
          (" (same metrics)" if exact else f" ({args.dtype}: two implementations round differently)"))
    print(f"greedy suffixes that differ from the reference's: {len(flip_gaps)} of {configs * args.rows} rows"
          + (f", per configuration " + ", ".join(f"{k}={len(v)}" for k, v in flips.items() if v) +
             f"; memsweep's top-two gap at the first difference: largest {max(flip_gaps):.3g}, median "
             f"{statistics.median(flip_gaps):.3g} (equality rule: below {epsilon:.3g}: "
             + ("every difference is a near-tie)" if excused else "VIOLATED)") if flip_gaps else ""))
    ref_flops, ms_flops = reference_flops(config, args.rows), memsweep_minimum_flops(config, examples)
    print(f"analytic FLOPs (matmuls): reference {ref_flops / 1e12:.3f} TFLOP ({ref_flops / ref / 1e9:.0f} GFLOP/s), memsweep's "
          f"minimum {ms_flops / 1e12:.3f} TFLOP ({ms_flops / ms / 1e9:.0f} GFLOP/s): the ratio at equal FLOP rates would be "
          f"{ms_flops / ref_flops:.3f}")
    print(f"ratio memsweep / reference: {ms / ref:.3f} (target <= 0.2)")
    if args.record:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit, "workload": args.workload,
                  "shape": args.shape, "device": args.device, "dtype": args.dtype, "rows": args.rows, "batch": args.batch,
                  "configurations": configs, "repeats": args.repeats, "threads": threads, "reference_s": ref,
                  "memsweep_s": ms, "memsweep_evaluation_s": ms_evaluation, "reference_flops": ref_flops,
                  "memsweep_minimum_flops": ms_flops, "parameters": {k: v for k, v in SHAPES[args.shape].items()},
                  "exact_match": {k: v["exact_match"] for k, v in ours.items()}, "decoded_per_row": decoded,
                  "scales": factors}
        with open(args.record, "a") as f:
            f.write(json.dumps(record) + "\n")
    if not excused:
        sys.exit(f"a greedy token differs from the reference's where memsweep's top-two gap is {max(flip_gaps):.3g}, "
                 f"not below {epsilon:.3g}")


if __name__ == "__main__":
    main()
