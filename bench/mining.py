"""select-memorized on a large Pile-like shard: a synthetic uint16 stream of >= 1 GB (random ids below 50,000) mined
by a pythia-70m-shaped random model, run as --part N/N so that the tool must seek to its part, at each batch size,
against the release before streaming (it read the whole stream into memory) on the same file, and against `memsweep
eval` on the same windows held as a small memorization set (what evaluating the batch costs, with no corpus). Prints,
for each: wall time, windows/s (model load included, same windows) and peak RSS (/usr/bin/time), and the target:
streaming peak RSS <= the model's weights + 256 MB.
Usage: bench/mining.py [--gigabytes 1.07] [--windows 512] [--parts 64] [--batches 8,32] [--old /path/to/older/memsweep]
On demand, outside CI."""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from memorization_sweep import SHAPES  # noqa: E402


def timed(command):
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, command)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{result.stderr[-3000:]}")
    return seconds, int(result.stderr.strip().splitlines()[-1]) / 1024  # KB -> MB


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=1.07)
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--parts", type=int, default=64)
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--memsweep", default=str(ROOT / "build" / "memsweep"))
    parser.add_argument("--old", help="a memsweep built before streaming (in-memory select-memorized)")
    args = parser.parse_args()
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    work = Path(tempfile.mkdtemp(prefix="memsweep-mining-"))
    torch.manual_seed(0)
    GPTNeoXForCausalLM(GPTNeoXConfig(**SHAPES["pythia-70m"], max_position_embeddings=2048, eos_token_id=0,
                                     bos_token_id=0)).save_pretrained(work / "model")
    weights_mb = (work / "model" / "model.safetensors").stat().st_size / 1e6 * 1e6 / 2**20
    shard = work / "shard.u16"
    tokens = int(args.gigabytes * 1e9 / 2)
    rng = np.random.default_rng(1)
    with open(shard, "wb") as f:
        for start in range(0, tokens, 1 << 26):
            rng.integers(1, 50000, size=min(1 << 26, tokens - start), dtype=np.uint16).tofile(f)
    print(f"shard: {shard.stat().st_size / 1e9:.2f} GB ({tokens:,} tokens); model weights {weights_mb:.0f} MB; "
          f"{args.windows} windows of 32 + 32 tokens")
    # The part's first windows as a memorization set: what evaluating them costs without any corpus.
    first = (tokens - 64) // 64 + 1
    begin = first * (args.parts - 1) // args.parts
    windows = np.memmap(shard, dtype=np.uint16, mode="r")
    (work / "same.jsonl").write_text("".join(json.dumps({"tokens": windows[(begin + i) * 64:(begin + i + 1) * 64].tolist()}) + "\n"
                                             for i in range(args.windows)))
    rows = []
    for batch in map(int, args.batches.split(",")):
        common = ["--model", work / "model", "--input", shard, "--prefix", 32, "--suffix", 32, "--batch-size", batch, "--limit",
                  args.windows]
        seconds, peak = timed([args.memsweep, "select-memorized", *common, "--out", work / f"streamed{batch}.jsonl", "--part",
                               f"{args.parts}/{args.parts}", "--progress-every", 1e9])
        rows.append((f"streaming, --part {args.parts}/{args.parts}", batch, seconds, peak))
        seconds, peak = timed([args.memsweep, "eval", "--model", work / "model", "--task", f"memorization:{work / 'same.jsonl'}",
                               "--option", "prefix=32", "--batch-size", batch])
        rows.append(("eval of the same windows, no corpus", batch, seconds, peak))
        if args.old:
            seconds, peak = timed([args.old, "select-memorized", *common, "--out", work / f"in_memory{batch}.jsonl"])
            rows.append(("in memory (the release before)", batch, seconds, peak))
    print(f"{'version':<38} {'batch':>5} {'wall s':>8} {'windows/s':>10} {'peak RSS MB':>12}")
    for name, batch, seconds, peak in rows:
        print(f"{name:<38} {batch:>5} {seconds:>8.1f} {args.windows / seconds:>10.2f} {peak:>12.0f}")
    target = weights_mb + 256
    for name, batch, seconds, peak in rows:
        if name.startswith("streaming"):
            print(f"batch {batch}: streaming peak RSS {peak:.0f} MB against weights + 256 MB = {target:.0f} MB: "
                  f"{'met' if peak <= target else 'NOT met'}")
    shard.unlink()


if __name__ == "__main__":
    main()
