"""Worker peak memory against the issue's bound: peak RSS of `memsweep eval` (a memorization sweep over every block)
<= 1.3 x the weights in the run dtype + the activations `memsweep plan` estimates for the batch. Random-init
GPT-NeoX models with Pythia shapes, saved in float32 safetensors; runs float32 (the checkpoint is mapped, not
copied) and bfloat16 (converted once while loading). Prints weights, plan's activation estimate, peak RSS and the
ratio peak / (weights + activations).
Usage: bench/peak_memory.py [--shapes pythia-70m,pythia-160m] [--rows 32] [--batch 32] [--memsweep build/memsweep]
On demand, outside CI."""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from memorization_sweep import SHAPES  # noqa: E402

PREFIX = SUFFIX = 32


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="pythia-70m,pythia-160m")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    args = parser.parse_args()
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    work = Path(tempfile.mkdtemp(prefix="memsweep-memory-"))
    rows = torch.randint(1, 50000, (args.rows, PREFIX + SUFFIX), generator=torch.Generator().manual_seed(1)).tolist()
    (work / "set.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    print(f"memorization sweep, {args.rows} rows of {PREFIX}+{SUFFIX} tokens, batch {args.batch}")
    print(f"{'shape':<12} {'dtype':<9} {'weights MB':>10} {'activations MB':>14} {'peak RSS MB':>11} {'ratio':>6}  (target <= 1.3)")
    for shape in args.shapes.split(","):
        directory = work / shape
        torch.manual_seed(0)
        config = GPTNeoXConfig(**SHAPES[shape], max_position_embeddings=2048, rotary_pct=0.25, eos_token_id=0, bos_token_id=0)
        GPTNeoXForCausalLM(config).save_pretrained(directory)
        for dtype in ("float32", "bfloat16"):
            study = work / f"{shape}-{dtype}.toml"
            study.write_text(f'[run]\nbatch_size = {args.batch}\n[interventions]\nsingle_blocks = true\n'
                             f'[[models]]\nname = "m"\npath = "{directory}"\ndtype = "{dtype}"\n'
                             f'[[datasets]]\nname = "d"\nkind = "memorization"\npath = "{work / "set.jsonl"}"\n'
                             f'options = {{ prefix = {PREFIX} }}\n')
            plan = subprocess.run([args.memsweep, "plan", study, "--db", work / "plan.sqlite", "--tokens", str(PREFIX + SUFFIX - 1)],
                                  capture_output=True, text=True, check=True).stdout
            fields = next(line.split() for line in plan.splitlines() if line.startswith("m ") and dtype in line)
            weights, activations = float(fields[4]) * 1e3, float(fields[5]) * 1e3  # GB -> MB
            timed = subprocess.run(["/usr/bin/time", "-f", "%M", args.memsweep, "eval", "--model", directory, "--task",
                                    f"memorization:{work / 'set.jsonl'}", "--option", f"prefix={PREFIX}", "--batch-size",
                                    str(args.batch), "--sweep", "--dtype", dtype], capture_output=True, text=True)
            if timed.returncode != 0:
                sys.exit(f"memsweep eval failed:\n{timed.stderr}")
            peak = int(timed.stderr.strip().splitlines()[-1]) / 1024  # KB -> MB
            print(f"{shape:<12} {dtype:<9} {weights:>10.0f} {activations:>14.0f} {peak:>11.0f} {peak / (weights + activations):>6.2f}")


if __name__ == "__main__":
    main()
