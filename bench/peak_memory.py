"""A worker's measured peak memory against `memsweep plan`'s estimate for the same study: the bound is
measured peak <= estimate <= 1.5 x measured peak, for a memorization set (64-token rows: 32 + 32) and a benchmark set
(PIQA's first documents, tokenized by the GPT-NeoX-20B tokenizer), each under baseline + every block short-circuited.
Random-init GPT-NeoX models with Pythia shapes saved in float32 safetensors; runs float32 (the checkpoint is mapped,
not copied) and bfloat16 (converted once while loading).

measured = what `memsweep eval` holds at its peak, the counterpart of a GPU's peak allocated memory: its heap's peak
bytes in use minus those in use before the model loaded (its JSON's "memory"; the libraries and the dataset come
before and are not what plan estimates), plus the checkpoint it maps in place in float32 (weights in another dtype
are converted onto the heap). Its peak resident memory is printed too: glibc's heap keeps freed blocks (fragmentation)
and the process its libraries. estimate = plan's weights + activations of the model's largest batch (its memory
table). Exits 1 when a ratio leaves [1, 1.5].
Usage: bench/peak_memory.py [--shapes pythia-70m,pythia-160m] [--rows 64] [--documents 100] [--batch 32]
On demand, outside CI; needs ../shared/data (PIQA, the GPT-NeoX-20B tokenizer)."""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))
from memorization_sweep import SHAPES  # noqa: E402

PREFIX = SUFFIX = 32
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def plan_estimate(memsweep, study, model):
    """plan's weights + activations (bytes) of `model` from its memory table ("13.7 MB" columns)."""
    out = subprocess.run([memsweep, "plan", study], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[:1] == [model] and len(fields) > 9 and fields[5] in UNITS:
            weights = float(fields[4]) * UNITS[fields[5]]
            activations = float(fields[6]) * UNITS[fields[7]]
            return weights, activations
    sys.exit(f"no memory line for model {model} in plan's output:\n{out}")


def measured_peak(memsweep, model, task, batch, dtype, options=()):
    """(bytes held at the peak, peak resident bytes above those before the model loaded)."""
    args = [memsweep, "eval", "--model", model, "--task", task, "--batch-size", str(batch), "--sweep", "--dtype", dtype]
    for option in options:
        args += ["--option", option]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memsweep eval failed:\n{result.stderr}")
    memory = json.loads(result.stdout)["memory"]
    mapped = (Path(model) / "model.safetensors").stat().st_size if dtype == "float32" else 0
    return memory["peak_heap"] - memory["heap_before_model"] + mapped, memory["peak_rss"] - memory["rss_before_model"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="pythia-70m,pythia-160m")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    args = parser.parse_args()
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    work = Path(tempfile.mkdtemp(prefix="memsweep-memory-"))
    rows = torch.randint(1, 50000, (args.rows, PREFIX + SUFFIX), generator=torch.Generator().manual_seed(1)).tolist()
    (work / "memorized.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    with open(SHARED / "piqa" / "validation.jsonl") as piqa:
        (work / "piqa.jsonl").write_text("".join(next(piqa) for _ in range(args.documents)))
    datasets = {
        "memorized": ('kind = "memorization"', f'path = "{work / "memorized.jsonl"}"', f"options = {{ prefix = {PREFIX} }}"),
        "piqa": ('kind = "piqa"', f'path = "{work / "piqa.jsonl"}"', ""),
    }
    print(f"batch {args.batch}; memorized: {args.rows} rows of {PREFIX}+{SUFFIX} tokens; piqa: {args.documents} documents; "
          "baseline + every block short-circuited")
    print(f"{'shape':<12} {'dtype':<9} {'dataset':<10} {'weights MB':>10} {'activations MB':>14} {'estimate MB':>11} "
          f"{'measured MB':>11} {'estimate/measured':>17}  {'resident MB':>11}  (bound: 1 to 1.5)")
    failed = False
    for shape in args.shapes.split(","):
        directory = work / shape
        torch.manual_seed(0)
        config = GPTNeoXConfig(**SHAPES[shape], max_position_embeddings=2048, rotary_pct=0.25, eos_token_id=0, bos_token_id=0)
        GPTNeoXForCausalLM(config).save_pretrained(directory)
        shutil.copy(SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json", directory / "tokenizer.json")
        for dtype in ("float32", "bfloat16"):
            for name, lines in datasets.items():
                study = work / f"{shape}-{dtype}-{name}.toml"
                study.write_text(f"[run]\nbatch_size = {args.batch}\n[interventions]\nsingle_blocks = true\n"
                                 f'[store]\npath = "{work / "plan.sqlite"}"\n'
                                 f'[[models]]\nname = "m"\npath = "{directory}"\ndtype = "{dtype}"\n'
                                 f'[[datasets]]\nname = "{name}"\n' + "\n".join(lines) + "\n")
                weights, activations = plan_estimate(args.memsweep, study, "m")
                options = [f"prefix={PREFIX}"] if name == "memorized" else []
                kind = "memorization" if name == "memorized" else "piqa"
                measured, resident = measured_peak(args.memsweep, directory, f"{kind}:{work / (name + '.jsonl')}", args.batch,
                                                   dtype, options)
                ratio = (weights + activations) / measured
                failed |= not 1 <= ratio <= 1.5
                print(f"{shape:<12} {dtype:<9} {name:<10} {weights / 1e6:>10.0f} {activations / 1e6:>14.0f} "
                      f"{(weights + activations) / 1e6:>11.0f} {measured / 1e6:>11.0f} {ratio:>17.2f}  {resident / 1e6:>11.0f}"
                      f"{'' if 1 <= ratio <= 1.5 else '  OUTSIDE'}", flush=True)
    shutil.rmtree(work)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
