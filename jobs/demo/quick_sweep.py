"""Until the orchestrator lands: a single-block short-circuit sweep of the embedded demo model with
`memsweep eval` — baseline, then each block's attention short-circuited — on the memorized canaries, the
never-seen controls and held-out world text (divergence at the output). Prints one table.
Usage: quick_sweep.py MEMSWEEP [DEMO_DIR]"""
import json
import subprocess
import sys
from pathlib import Path

memsweep = sys.argv[1]
demo = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
layers = json.loads((demo / "config.json").read_text())["num_hidden_layers"]


def evaluate(kind, data, flags, options=()):
    args = [memsweep, "eval", "--model", str(demo), "--task", f"{kind}:{demo / data}", "--batch-size", "16", *flags]
    for option in options:
        args += ["--option", option]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memsweep eval failed:\n{result.stderr}")
    return json.loads(result.stdout)["results"][0]["metrics"]


print(f"demo model {demo} ({layers} blocks); canaries: 16-token prefix, 16-token suffix, EOS masked")
print(f"{'intervention':<18}{'canary EM':>10}{'canary TA':>10}{'canary CE':>10}{'control EM':>11}{'KL at output':>13}")
for block in [None] + list(range(layers)):
    flags = [] if block is None else ["--short-circuit", str(block)]
    canaries = evaluate("memorization", "canaries.jsonl", flags, ["prefix=16"])
    controls = evaluate("memorization", "controls.jsonl", flags, ["prefix=16"])
    kl = "" if block is None else f"{evaluate('divergence', 'divergence.jsonl', flags)[f'kl.{layers - 1:02d}']:.3f}"
    name = "baseline" if block is None else f"short_circuit:{block}"
    print(f"{name:<18}{canaries['exact_match']:>10.3f}{canaries['token_accuracy']:>10.3f}"
          f"{canaries['completion_entropy']:>10.2f}{controls['exact_match']:>11.3f}{kl:>13}")
