"""Before/after: is memsweep as fast after a change as before it, on the three workloads of the performance issue?
Two memsweep executables (--before, --after) run memsweep's side of
  - bench/forward_throughput.py (workload 3): the medians of `memsweep forward --timing --repeats` (fused attention)
    summed over --shapes;
  - bench/multiple_choice_sweep.py (workload 2): `eval --task piqa:... --sweep` on the first --docs PIQA documents,
    its JSON's `seconds.evaluation`;
  - bench/memorization_sweep.py (workload 1, `--workload worst`): `eval --task memorization:... --sweep` on --rows
    rows, its JSON's `seconds.evaluation`;
on inputs prepared once by those scripts' own functions (the same random-init models, token rows, documents and
memsweep command lines), without their reference sides (transformers, lm-evaluation-harness: the same before and
after, and most of those scripts' time). The builds alternate, the order within a pair too (before, after, after,
before, ...), --runs times each, so the machine's drift falls on both alike. Prints each run's seconds, the medians,
after / before per workload and a PASS/FAIL line: every ratio <= --limit and both builds' outputs the same (the
eval JSONs' metrics equal, forward logits of the first shape within 1e-6). memsweep runs with OMP_NUM_THREADS =
--threads (1, as the RESULTS.md entries; keep it within the idle cores).
Usage: bench/compare_builds.py --before BIN --after BIN [--runs 5] [--limit 1.03] [--threads 1]
       [--shapes 1x64,8x64,8x256,32x256] [--repeats 5] [--docs 50] [--rows 32] [--batch 32] [--shape pythia-70m]
       [--device cpu|cuda]
On demand, outside CI; needs ../shared/data (PIQA and the GPT-NeoX-20B tokenizer), as multiple_choice_sweep.py."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward_throughput  # noqa: E402
import memorization_sweep  # noqa: E402
import multiple_choice_sweep  # noqa: E402


def forward_workload(args, work, device):
    """(seconds(binary, label), same()) for workload 3."""
    config = forward_throughput.write_model(args.shape, args.device, torch.float32, work / "model")
    inputs = []
    for item in args.shapes.split(","):
        rows = work / f"rows-{item}.json"
        rows.write_text(json.dumps(forward_throughput.shape_ids(config, item).tolist()))
        inputs.append((rows, int(item.split("x")[0])))

    def seconds(binary, label):
        return sum(forward_throughput.time_memsweep(binary, work / "model", rows, batch, args.repeats, device, "float32", "fused")
                   for rows, batch in inputs)

    def same():
        logits = []
        for label in ("before", "after"):
            out = work / f"logits-{label}.safetensors"
            subprocess.run(forward_throughput.forward_command(getattr(args, label), work / "model", *inputs[0], device,
                                                              "float32", "--out", out), check=True, capture_output=True)
            logits.append(load_file(out))
        difference = max((logits[0][k] - logits[1][k]).abs().max().item() for k in logits[0])
        return (logits[0].keys() == logits[1].keys() and difference <= 1e-6,
                f"logits of {args.shapes.split(',')[0]} differ by at most {difference:.3g}")
    return seconds, same


def eval_workload(work, command):
    """(seconds(binary, label), same()) for an `eval` workload; command(binary, out) is its command line."""
    def seconds(binary, label):
        out = subprocess.run(command(binary, work / f"{label}.json"), capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"memsweep eval failed ({binary}):\n{out.stderr}")
        return json.loads(out.stdout)["seconds"]["evaluation"]

    def same():
        before, after = (json.loads((work / f"{label}.json").read_text())["results"] for label in ("before", "after"))
        metrics = [r["metrics"] for r in before] == [r["metrics"] for r in after]
        return metrics, (("metrics equal" if metrics else "METRICS DIFFER") + ", every example's values and details "
                         + ("identical" if before == after else "not identical"))
    return seconds, same


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="memsweep executable before the change")
    parser.add_argument("--after", required=True, help="memsweep executable after the change")
    parser.add_argument("--runs", type=int, default=5, help="runs of each build per workload")
    parser.add_argument("--limit", type=float, default=1.03, help="largest allowed after / before")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of memsweep (and torch's threads here)")
    parser.add_argument("--shape", default="pythia-70m", choices=list(memorization_sweep.SHAPES))
    parser.add_argument("--shapes", default=forward_throughput.DEFAULT_SHAPES, help="forward_throughput's batch x length list")
    parser.add_argument("--repeats", type=int, default=5, help="forward_throughput's timed passes per shape")
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started = time.perf_counter()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every memsweep process
    torch.set_num_threads(args.threads)
    device = args.device if args.device != "cuda" else "cuda:0"
    work = Path(tempfile.mkdtemp(prefix="memsweep-compare-"))
    for name in ("forward", "multiple_choice", "memorization"):
        (work / name).mkdir()

    _, model_dir, data_file = multiple_choice_sweep.write_workload(work / "multiple_choice", args.shape, args.docs, args.device)
    memorization = argparse.Namespace(shape=args.shape, rows=args.rows, batch=args.batch, device=args.device, dtype="float32",
                                      workload="worst", memsweep=None)
    memorization_sweep.write_workload(memorization, work / "memorization")
    workloads = {
        "forward_throughput": forward_workload(args, work / "forward", device),
        "multiple_choice_sweep": eval_workload(work / "multiple_choice", lambda binary, out: multiple_choice_sweep.memsweep_command(
            binary, model_dir, data_file, args.batch, args.device, out)),
        "memorization_sweep": eval_workload(work / "memorization", lambda binary, out: memorization_sweep.sweep_command(
            argparse.Namespace(**{**vars(memorization), "memsweep": binary}), work / "memorization", out)),
    }
    print(f"shape {args.shape}, {args.device} float32, OMP_NUM_THREADS={args.threads}; forward {args.shapes} x {args.repeats} "
          f"passes, PIQA {args.docs} documents, memorization {args.rows} rows, batch {args.batch}; inputs prepared in "
          f"{time.perf_counter() - started:.0f} s\nbefore {args.before}\nafter  {args.after}", flush=True)

    times = {name: {"before": [], "after": []} for name in workloads}
    for run in range(args.runs):
        order = ("before", "after") if run % 2 == 0 else ("after", "before")
        for name, (seconds, _) in workloads.items():
            start = time.perf_counter()
            for label in order:
                times[name][label].append(seconds(getattr(args, label), label))
            print(f"run {run + 1}/{args.runs} {name}: " + ", ".join(f"{label} {times[name][label][-1]:.3f} s" for label in order)
                  + f" (wall time of the pair {time.perf_counter() - start:.0f} s)", flush=True)

    passed = True
    print(f"\n{'workload':<22} {'median before s':>15} {'median after s':>15} {'after/before':>13}  per run: before | after")
    for name in workloads:
        before, after = (statistics.median(times[name][label]) for label in ("before", "after"))
        passed &= after / before <= args.limit
        print(f"{name:<22} {before:15.3f} {after:15.3f} {after / before:13.3f}  "
              + " ".join(f"{t:.3f}" for t in times[name]["before"]) + " | " + " ".join(f"{t:.3f}" for t in times[name]["after"]))
    for name, (_, same) in workloads.items():
        equal, description = same()
        passed &= equal
        print(f"outputs, {name}: {'same' if equal else 'DIFFERENT'} ({description})")
    print(f"{'PASS' if passed else 'FAIL'}: after/before <= {args.limit} for every workload and the same outputs "
          f"(medians of {args.runs} alternating runs; {time.perf_counter() - started:.0f} s in all)")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
