"""`memsweep plan` on studies of 20,000 and 40,000 units whose stores hold every unit (the issue's bound: <= 5 s at
20,000, and at most 2.5 x that at 40,000). A tiny random GPT-NeoX of 19 layers, baseline + every block one
intervention per unit, one memorization row per unit; the store is made by `memsweep run`, stopped with SIGTERM once
it has registered the units (they stay pending: plan reads them the same whatever their status).
Usage: bench/plan_scaling.py [--units 20000,40000] [--repeats 3]    (on demand, outside CI)"""
import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LAYERS = 19  # baseline + 19 single blocks = 20 interventions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", default="20000,40000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    parser.add_argument("--also", help="another memsweep binary (an older build) timed on the same stores, once each")
    args = parser.parse_args()
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    work = Path(tempfile.mkdtemp(prefix="memsweep-plan-"))
    GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=64, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)).save_pretrained(work / "model")
    print(f"{'units':>7} {'plan, store holding every unit (median of ' + str(args.repeats) + ')':>45} {'plan, no store':>15}")
    times = {}
    for units in map(int, args.units.split(",")):
        rows = units // (LAYERS + 1)
        (work / f"rows{units}.jsonl").write_text("".join(json.dumps({"tokens": [1 + i % 60] * 8}) + "\n" for i in range(rows)))
        study = work / f"study{units}.toml"
        study.write_text(f'[run]\nunit_size = 1\ninterventions_per_unit = 1\n[interventions]\nsingle_blocks = true\n'
                         f'[store]\npath = "s{units}.sqlite"\njournal_mode = "wal"\n[[models]]\nname = "m"\npath = "model"\n'
                         f'[[datasets]]\nname = "d"\nkind = "memorization"\npath = "rows{units}.jsonl"\noptions = {{ prefix = 4 }}\n')
        fresh = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([args.memsweep, "plan", study], capture_output=True, check=True)
            fresh.append(time.perf_counter() - start)
        store = work / f"s{units}.sqlite"
        run = subprocess.Popen([args.memsweep, "run", study], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:  # until the units are registered
            time.sleep(0.5)
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == units:
                        break
            except sqlite3.Error:
                pass
        run.send_signal(signal.SIGTERM)
        run.wait()
        stored = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = subprocess.run([args.memsweep, "plan", study], capture_output=True, text=True, check=True).stdout
            stored.append(time.perf_counter() - start)
        total = next(line for line in out.splitlines() if line.startswith("total"))
        assert int(total.split()[1]) == units and int(total.split()[-1]) == 0, total  # every unit in the store
        times[units] = statistics.median(stored)
        print(f"{units:>7} {times[units]:>44.2f}s {statistics.median(fresh):>14.2f}s", flush=True)
        if args.also:
            start = time.perf_counter()
            subprocess.run([args.also, "plan", study], capture_output=True, check=True)
            print(f"{'':>7} {args.also}: {time.perf_counter() - start:.2f}s with the store", flush=True)
    first, *rest = sorted(times)
    for units in rest:
        print(f"{units} / {first} units: {times[units] / times[first]:.2f} x the time")
    sys.exit(0 if times[first] <= 5 and all(times[u] <= 2.5 * times[first] for u in rest) else 1)


if __name__ == "__main__":
    main()
