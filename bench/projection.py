"""How long the paper's whole single-block grid takes for Pythia-12B on the complete memorized set (2.38 M rows x 37
configurations: the baseline and each of 36 blocks short-circuited; EM, TA, CE) on 64 GPUs, from recorded
measurements (bench/measurements.jsonl, appended by `bench/memorization_sweep.py --record`):

- per-GPU throughput: the analytic matmul FLOPs memsweep must compute (memorization_sweep.py's model) divided by
  the measured time of the GPU record of the largest shape (whole process: model load and start-up included, so
  conservative), FLOP-scaled to the 12B shape: the 12B run is assumed to reach the same FLOP rate;
- the work: the same FLOP model on the 12B shape, with the paper-shaped workload's (`--workload paper`) EM at the
  same relative depth: as memsweep decodes today (a batch's mismatching rows decode together until the longest is
  done: 31 steps for every row a block does not reproduce), and at the minimum (each row from its first mismatch,
  as measured there); the baseline decodes none (the rows are what it reproduces);
- bounded below by rank 0's measured scheduling capacity (units per second, the study's units of 256 rows with all
  37 configurations in one unit).
Without a GPU record it says so and projects nothing. Usage: bench/projection.py [--measurements FILE] [--gpus 64]."""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = SUFFIX = 32
PYTHIA_12B = dict(vocab_size=50688, hidden_size=5120, num_hidden_layers=36, num_attention_heads=40, intermediate_size=20480)
MEMORIZED_ROWS = 2_380_000  # Pythia-12B's memorized set (pythia-memorized-evals, deduped/duped 12b splits: ~2.38 M)
UNIT_SIZE = 256  # the study's default unit_size


def per_token(shape):
    """Matmul FLOPs per token: a layer's (4 d^2 + 2 d inner, times 2) and the output head's (2 d V)."""
    d, inner = shape["hidden_size"], shape["intermediate_size"]
    return 2 * (4 * d * d + 2 * d * inner), shape["num_hidden_layers"], 2 * d * shape["vocab_size"]


def sweep_flops(shape, rows, decoded):
    """memsweep's minimum for a single-block sweep: the baseline's teacher-forced pass, per block b the layers from b
    again, the head on suffix positions, and `decoded[configuration]` decode steps per row."""
    layer, layers, head = per_token(shape)
    total = 0.0
    for name, first in [("baseline", 0)] + [(f"short_circuit:{b}", b) for b in range(layers)]:
        total += rows * ((layers - first) * layer * (PREFIX + SUFFIX - 1) + head * SUFFIX + decoded[name] * (layers * layer + head))
    return total


def decoded_by_depth(measured, layers):
    """Per configuration of a `layers`-block model, the decode steps per row `measured` ({configuration: steps} of a
    recorded model) gives at the same relative depth ((b + 0.5) / L), linear between its blocks."""
    count = len(measured) - 1
    points = [((b + 0.5) / count, measured[f"short_circuit:{b}"]) for b in range(count)]
    out = {"baseline": measured["baseline"]}
    for b in range(layers):
        depth = (b + 0.5) / layers
        if depth <= points[0][0]:
            value = points[0][1]
        elif depth >= points[-1][0]:
            value = points[-1][1]
        else:
            (x0, y0), (x1, y1) = next((p, q) for p, q in zip(points, points[1:]) if p[0] <= depth <= q[0])
            value = y0 + (y1 - y0) * (depth - x0) / (x1 - x0)
        out[f"short_circuit:{b}"] = value
    return out


def parameters(shape):
    layer, layers, head = per_token(shape)
    return (layer * layers + head) / 2


def hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--measurements", default=str(ROOT / "bench" / "measurements.jsonl"))
    parser.add_argument("--gpus", type=int, default=64)
    args = parser.parse_args()
    records = [json.loads(line) for line in Path(args.measurements).read_text().splitlines() if line.strip()]
    sweeps = [r for r in records if r.get("kind", "memorization_sweep") == "memorization_sweep"]
    gpu = [r for r in sweeps if r["device"].startswith("cuda")]
    paper = [r for r in sweeps if r["workload"] == "paper"]
    capacity = [r for r in records if r.get("kind") == "scheduler_capacity"]
    if not gpu:
        print(f"no GPU measurement in {args.measurements}: nothing projected (run `bench/memorization_sweep.py --device cuda "
              f"--record {args.measurements}` on a GPU, or bench/gpu.sh)")
        return 1
    if not paper:
        print(f"no paper-shaped measurement in {args.measurements} (`--workload paper --record`): nothing projected")
        return 1
    base = max(gpu, key=lambda r: parameters(r["parameters"]))
    rate = base["memsweep_minimum_flops"] / base["memsweep_s"]
    shape_record = max(paper, key=lambda r: (r["date"], parameters(r["parameters"])))
    layers = PYTHIA_12B["num_hidden_layers"]
    decoded = decoded_by_depth(shape_record["decoded_per_row"], layers)
    # memsweep today decodes a batch's mismatching rows together until the longest is done: ~31 steps for each of them.
    today = decoded_by_depth({k: (1 - em) * (SUFFIX - 1) for k, em in shape_record["exact_match"].items()}, layers)
    minimum = sweep_flops(PYTHIA_12B, MEMORIZED_ROWS, decoded)
    work = sweep_flops(PYTHIA_12B, MEMORIZED_ROWS, today)
    compute = work / rate / args.gpus
    worst = sweep_flops(PYTHIA_12B, MEMORIZED_ROWS, {k: 0.0 if k == "baseline" else SUFFIX - 1.0 for k in decoded})
    units = -(-MEMORIZED_ROWS // UNIT_SIZE)
    print(f"Pythia-12B ({parameters(PYTHIA_12B) / 1e9:.1f} B matmul parameters), {MEMORIZED_ROWS:,} memorized rows x 37 "
          f"configurations, {args.gpus} GPUs")
    print(f"per-GPU rate: {rate / 1e12:.1f} TFLOP/s of memsweep's minimum work, measured {base['date']} on {base['device']} "
          f"{base['dtype']} at the {base['shape']} shape ({base['rows']} rows, {base['workload']} workload, whole process "
          f"{base['memsweep_s']:.2f} s){' — ' + base['note'] if base.get('note') else ''}; FLOP-scaled to 12B: the 12B run is "
          f"assumed to reach the same rate (its larger matmuls should do better; its memory traffic in decode steps worse)")
    print(f"decode steps per row, from the paper-shaped workload ({shape_record['shape']}, {shape_record['date']}) by relative "
          f"depth, blocks 0, 5, ..., 35: as memsweep decodes today (every row its block does not reproduce, 31 steps) "
          + ", ".join(f"{today[f'short_circuit:{b}']:.1f}" for b in range(0, layers, 5)) + "; the minimum (each row "
          "from its first mismatch only) " + ", ".join(f"{decoded[f'short_circuit:{b}']:.1f}" for b in range(0, layers, 5)))
    print(f"work: {work / 1e18:.1f} EFLOP as memsweep decodes today; {minimum / 1e18:.1f} at the minimum; {worst / 1e18:.1f} in "
          f"the worst case (every short-circuited row decoding 31 tokens)")
    print(f"compute on {args.gpus} GPUs: {hours(compute)} (at the minimum {hours(minimum / rate / args.gpus)}, worst case "
          f"{hours(worst / rate / args.gpus)})")
    if capacity:
        slowest = min(capacity, key=lambda r: r["units_per_second"])
        bound = units / slowest["units_per_second"]
        print(f"scheduling: {units:,} units of {UNIT_SIZE} rows; rank 0's slowest measured rate {slowest['units_per_second']} "
              f"units/s ({slowest['setting']}, {slowest['date']}) needs {hours(bound)}: "
              + ("the bound" if bound > compute else "not the bound"))
        compute = max(compute, bound)
    else:
        print("scheduling: no measured capacity recorded: not bounded")
    print(f"projected: {hours(compute)}, plus one model load per GPU (48 GB in float32 / 24 GB in bf16 from the file system)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
