"""Bytes per example x intervention in the store (default detail), on a real study of >= 10^6 pairs: a small random
GPT-NeoX (vocabulary 1,024, so token ids take the same widths as Pythia's 50k), rows of 32 + 32 tokens, half of them
made memorized (the prefix + the model's own greedy continuation, so EM = 1 under the baseline), half random (EM = 0),
under the baseline and every block short-circuited. Prints the file size per pair; the split between EM = 1 and
EM = 0 pairs (each pair carries its (unit, intervention) chunk's column bytes per example plus an equal share of the
rest of the file), and the same from two stores holding only EM = 1 and only EM = 0 pairs; the time `report` takes
(it reads the views); what `plan` projected; and the projection for Pythia-12B's memorized set.
Usage: bench/store_size.py [--rows 200000] [--memsweep build/memsweep]. On demand, outside CI (~15 min on 2 cores)."""
import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from memsweep_testing import make_gpt_neox  # noqa: E402

STUDY = """[study]
name = "{name}"
[[models]]
name = "tiny"
path = "model"
{datasets}
[interventions]
baseline = true
single_blocks = {blocks}
[run]
batch_size = 256
unit_size = 1024
"""
DATASET = '[[datasets]]\nname = "{name}"\nkind = "memorization"\npath = "{name}.jsonl"\noptions = {{ prefix = 32 }}\n'


def run(*command):
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command[:2]} failed:\n{result.stderr[-3000:]}")
    return result


def study(work, memsweep, name, datasets, blocks):
    path = work / f"{name}.toml"
    path.write_text(STUDY.format(name=name, datasets="".join(DATASET.format(name=d) for d in datasets), blocks=str(blocks).lower()))
    projected = [line for line in run(memsweep, "plan", path).stdout.splitlines() if "store:" in line]
    start = time.perf_counter()
    run(memsweep, "run", path)
    seconds = time.perf_counter() - start
    return work / f"{name}.sqlite", seconds, projected


def split(store):
    """(pairs, bytes per pair) overall and for EM = 1 and EM = 0 pairs, by the accounting in the module's docstring."""
    db = sqlite3.connect(store)
    size = Path(store).stat().st_size
    chunks = db.execute("SELECT v.unit_id, v.intervention_id, u.count, SUM(length(v.data)) FROM example_values v "
                        "JOIN units u ON u.id = v.unit_id GROUP BY 1, 2").fetchall()
    ones = dict(((unit, iv), ones) for unit, iv, ones in db.execute(
        "SELECT v.unit_id, v.intervention_id, length(replace(v.data, X'00', X'')) FROM example_values v WHERE v.name = 'exact_match'"))
    pairs = sum(count for _, _, count, _ in chunks)
    data = sum(b for *_, b in chunks)
    overhead = (size - data) / pairs
    totals = {1: [0, 0.0], 0: [0, 0.0]}
    for unit, iv, count, b in chunks:
        em1 = ones[(unit, iv)]
        for em, n in ((1, em1), (0, count - em1)):
            totals[em][0] += n
            totals[em][1] += n * (b / count + overhead)
    return size, pairs, data / pairs, overhead, {em: (n, total / n if n else float("nan")) for em, (n, total) in totals.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memsweep-store-size-"))
    make_gpt_neox(work / "model", seed=1, vocab_size=1024, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128)
    half = args.rows // 2
    rng = np.random.default_rng(0)
    rows = rng.integers(1, 1000, size=(args.rows, 64))
    with open(work / "random.jsonl", "w") as f:
        for r in rows[half:]:
            f.write(json.dumps({"tokens": r.tolist()}) + "\n")
    # The model's own greedy continuations of the first half's prefixes: rows it reproduces.
    with open(work / "seeds.jsonl", "w") as f:
        for r in rows[:half]:
            f.write(json.dumps({"tokens": r.tolist()}) + "\n")
    run(args.memsweep, "eval", "--model", work / "model", "--task", f"memorization:{work / 'seeds.jsonl'}", "--option", "prefix=32",
        "--intervention", "baseline", "--batch-size", 256, "--out", work / "seeds.json")
    examples = json.loads((work / "seeds.json").read_text())["results"][0]["examples"]
    with open(work / "memorized.jsonl", "w") as f:
        for e in examples:
            f.write(json.dumps({"tokens": rows[e["index"]][:32].tolist() + e["detail"]["continuation"]}) + "\n")

    print(f"rows: {half} memorized + {args.rows - half} random, 32 + 32 tokens; model: GPT-NeoX, 4 blocks, vocabulary 1024")
    mixed, seconds, projected = study(work, args.memsweep, "mixed", ["memorized", "random"], True)
    size, pairs, data, overhead, by_em = split(mixed)
    print(f"mixed study (baseline + 4 blocks): {pairs:,} pairs in {seconds:.0f} s; store {size / 1e6:.1f} MB = "
          f"{size / pairs:.1f} bytes per pair ({data:.1f} column data + {overhead:.1f} the rest)")
    for em, (n, per) in sorted(by_em.items(), reverse=True):
        print(f"  EM = {em}: {n:,} pairs, {per:.1f} bytes per pair")
    print(f"  plan projected: {projected}")
    start = time.perf_counter()
    run(args.memsweep, "report", mixed, "--out", work / "report", "--no-figures")
    print(f"  report (tables and the views' row counts): {time.perf_counter() - start:.1f} s")
    for name, dataset in (("only_em1", "memorized"), ("only_em0", "random")):
        store, _, _ = study(work, args.memsweep, name, [dataset], False)  # the baseline alone
        size, pairs, _, _, by_em = split(store)
        print(f"{name}: {pairs:,} pairs (EM = 1: {by_em[1][0]:,}), store {size / pairs:.1f} bytes per pair")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
