"""A model split over several GPUs (memsweep --devices K) computes what it computes on one: the check that the CPU
tests (CPU placeholders, test_model_parity.py::test_layers_split_over_devices) cannot make, because on real devices
the residual stream, the attention inputs, caches and masks must follow each layer's device.
Usage: bench/split_devices.py [--memsweep build-gpu/memsweep] [--devices K] [--device cuda:0|cpu]
       (K defaults to every visible GPU, <= 4)
Needs >= 2 CUDA GPUs; exits 0 with a message otherwise. Run by bench/gpu.sh."""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from memsweep_testing import read_logits, write_tokens  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memsweep", default=str(ROOT / "build-gpu" / "memsweep"))
    parser.add_argument("--devices", type=int, default=min(torch.cuda.device_count(), 4))
    parser.add_argument("--device", default="cuda:0", help="the first device (cpu: a smoke run of this script on placeholders)")
    args = parser.parse_args()
    if args.devices < 2 and args.device != "cpu":
        print(f"split_devices: {torch.cuda.device_count()} GPU(s) visible; a split needs 2 or more: not checked")
        return
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    work = Path(tempfile.mkdtemp(prefix="memsweep-split-"))
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=512, hidden_size=128, num_hidden_layers=8, num_attention_heads=4, intermediate_size=512,
                           max_position_embeddings=256, eos_token_id=0, bos_token_id=0)
    GPTNeoXForCausalLM(config).save_pretrained(work / "model")
    rows = torch.randint(1, 512, (6, 40), generator=torch.Generator().manual_seed(1)).tolist()
    rows[1] = rows[1][:17]  # left padding in the batch
    tokens = write_tokens(work / "tokens.json", rows)
    (work / "set.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    logits, sweeps = {}, {}
    for k in (1, args.devices):
        common = ["--model", work / "model", "--device", args.device, "--devices", str(k)]
        subprocess.run([args.memsweep, "forward", *common, "--tokens", tokens, "--out", work / f"logits{k}.safetensors",
                        "--batch-size", "3", "--short-circuit", "2"], check=True)
        logits[k] = read_logits(work / f"logits{k}.safetensors", len(rows))
        out = subprocess.run([args.memsweep, "eval", *common, "--task", f"memorization:{work / 'set.jsonl'}", "--option",
                              "prefix=8", "--sweep", "--batch-size", "4"], check=True, capture_output=True, text=True)
        sweeps[k] = [(r["intervention"], r["metrics"]) for r in json.loads(out.stdout)["results"]]
    worst = max((a - b).abs().max().item() for a, b in zip(logits[1], logits[args.devices]))
    same = sweeps[1] == sweeps[args.devices]
    print(f"split over {args.devices} devices from {args.device} vs one: logits max abs diff {worst:.3g}; memorization sweep "
          f"({len(sweeps[1])} configurations) {'identical' if same else 'DIFFERENT'}")
    if worst > 1e-5 or not same:
        sys.exit("split_devices: a split model differs from the unsplit one")


if __name__ == "__main__":
    main()
