"""Until the orchestrator lands: a single-block short-circuit sweep of the embedded demo model with
`memsweep eval --sweep` — baseline, then each block's attention short-circuited — on the memorized canaries,
the never-seen controls and held-out world text (divergence at the output). Prints one table.
Usage: quick_sweep.py MEMSWEEP [DEMO_DIR]"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

memsweep = sys.argv[1]
demo = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
layers = json.loads((demo / "config.json").read_text())["num_hidden_layers"]


def sweep(kind, data, *options):
    args = [memsweep, "eval", "--model", str(demo), "--task", f"{kind}:{demo / data}", "--batch-size", "16", "--sweep"]
    for option in options:
        args += ["--option", option]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memsweep eval failed:\n{result.stderr}")
    return {r["intervention"]: r["metrics"] for r in json.loads(result.stdout)["results"]}


canaries = sweep("memorization", "canaries.jsonl", "prefix=16")
# Baseline exact match by how often each canary was repeated in training (the "repeats" field of the set).
with tempfile.TemporaryDirectory() as work:
    subprocess.run([memsweep, "eval", "--model", str(demo), "--task", f"memorization:{demo / 'canaries.jsonl'}", "--option",
                    "prefix=16", "--out", f"{work}/baseline.json"], capture_output=True, text=True, check=True)
    examples = json.loads(Path(f"{work}/baseline.json").read_text())["results"][0]["examples"]
repeats = [json.loads(line)["repeats"] for line in (demo / "canaries.jsonl").read_text().splitlines()]
by_repeats = {}
for example in examples:
    by_repeats.setdefault(repeats[example["index"]], []).append(example["values"]["exact_match"])
controls = sweep("memorization", "controls.jsonl", "prefix=16")
divergence = sweep("divergence", "divergence.jsonl")
print(f"demo model {demo} ({layers} blocks); canaries and controls: 16-token prefix, 16-token suffix, EOS masked")
print("baseline EM by training repetitions: " +
      ", ".join(f"{r}x {sum(v) / len(v):.2f}" for r, v in sorted(by_repeats.items())) + " (never seen: controls below)")
print(f"{'intervention':<18}{'canary EM':>10}{'canary TA':>10}{'canary CE':>10}{'control EM':>11}{'KL at output':>13}")
for name, metrics in canaries.items():
    kl = divergence[name].get(f"kl.{layers - 1:02d}")
    print(f"{name:<18}{metrics['exact_match']:>10.3f}{metrics['token_accuracy']:>10.3f}{metrics['completion_entropy']:>10.2f}"
          f"{controls[name]['exact_match']:>11.3f}{'' if kl is None else f'{kl:.3f}':>13}")
