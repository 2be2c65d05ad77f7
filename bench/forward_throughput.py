"""Benchmark, workload (3) of the performance issue: raw teacher-forced forward throughput of one random-init
Pythia-shaped GPT-NeoX model (or, with --architecture llama, a Llama of the same width and depth: 4 query heads per
KV head, a gated MLP of 8/3 x hidden) at a few batch sizes and lengths, memsweep (`memsweep forward --timing`) against
transformers with each of its attention implementations (eager, sdpa: the fastest on CPU and GPU alike), and the
same machine's large-matmul rate, with an analytic FLOP count, so the forward's fraction of the matmul rate shows.
Both sides time only the forward passes (model loaded, one warm-up pass, device synchronized), the median of
--repeats passes. The logits are checked to agree first (float32: 1e-4 relative to the largest logit).
Usage: bench/forward_throughput.py [--shape pythia-70m] [--architecture gpt_neox|llama] [--device cpu|cuda] [--dtype float32|bfloat16]
       [--shapes 1x64,8x64,8x256,32x256] [--repeats 5] [--memsweep build/memsweep]
On demand, outside CI."""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from memorization_sweep import SHAPES, synchronize  # noqa: E402


def forward_flops(config, batch, length):
    """Multiply-adds x 2 of one forward pass over batch x length tokens: projections, MLP, attention scores and
    weighted sums over the full (causal-masked, still computed) length, and the LM head."""
    d, inner, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    kv = d * getattr(config, "num_key_value_heads", config.num_attention_heads) // config.num_attention_heads
    mlp_matrices = 3 if config.model_type == "llama" else 2  # gate, up, down
    per_token = layers * (2 * d * (d + 2 * kv) + 2 * d * d + mlp_matrices * 2 * d * inner + 2 * 2 * length * d) + 2 * d * vocab
    return batch * length * per_token


def matmul_rate(device, dtype, size):
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize()
    repeats = 10 if device != "cpu" else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def time_reference(model, ids, repeats):
    with torch.inference_mode():
        model(ids)
        times = []
        for _ in range(repeats):
            synchronize()
            start = time.perf_counter()
            model(ids)
            synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


DEFAULT_SHAPES = "1x64,8x64,8x256,32x256"


def write_model(shape, device, dtype, directory, architecture="gpt_neox"):
    """The random-init model of `shape` (seed 0), saved to `directory`; returns its config."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if architecture == "llama":
        sizes = dict(SHAPES[shape], num_key_value_heads=SHAPES[shape]["num_attention_heads"] // 4,
                     intermediate_size=SHAPES[shape]["hidden_size"] * 8 // 3 // 64 * 64)
        config, model_class = LlamaConfig(**sizes, max_position_embeddings=2048), LlamaForCausalLM
    else:
        config, model_class = GPTNeoXConfig(**SHAPES[shape], max_position_embeddings=2048, rotary_pct=0.25), GPTNeoXForCausalLM
    with torch.device(device):
        model_class(config).to(dtype).save_pretrained(directory)
    return config


def shape_ids(config, item):
    """The token ids of one "BATCHxLENGTH" item of --shapes."""
    batch, length = map(int, item.split("x"))
    return torch.randint(1, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(batch * 7 + length))


def forward_command(memsweep, model_dir, rows_file, batch, device, dtype, *options):
    return [memsweep, "forward", "--model", model_dir, "--tokens", rows_file, "--batch-size", str(batch), "--device", device,
            "--dtype", dtype, *options]


def time_memsweep(memsweep, model_dir, rows_file, batch, repeats, device, dtype, attention):
    """The median of `memsweep forward --timing`'s passes."""
    out = subprocess.run(forward_command(memsweep, model_dir, rows_file, batch, device, dtype, "--timing", str(repeats),
                                         "--attention", attention), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"memsweep forward failed:\n{out.stderr}")
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="pythia-70m", choices=list(SHAPES))
    parser.add_argument("--architecture", default="gpt_neox", choices=["gpt_neox", "llama"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=0, help="default: 2048 on a CPU, 8192 on a GPU")
    parser.add_argument("--memsweep", default=str(ROOT.parent / "build" / "memsweep"))
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, args.dtype)
    work = Path(tempfile.mkdtemp(prefix="memsweep-forward-"))
    config = write_model(args.shape, args.device, dtype, work / "model", args.architecture)
    models = {name: AutoModelForCausalLM.from_pretrained(work / "model", dtype=dtype, attn_implementation=name).to(args.device).eval()
              for name in ("eager", "sdpa")}
    size = args.matmul_size or (2048 if args.device == "cpu" else 8192)
    peak = matmul_rate(args.device, dtype, size)
    print(f"shape {args.shape} ({args.architecture}), {args.device} {args.dtype}, {torch.get_num_threads()} CPU threads; "
          f"{size}^3 {args.dtype} matmul: {peak / 1e12:.2f} TFLOP/s")
    print(f"{'batch x length':>15} {'eager s':>9} {'sdpa s':>9} {'memsweep s':>11} {'ratio':>7} {'memsweep TFLOP/s':>17} "
          f"{'of matmul':>10} {'memsweep eager s':>17}")
    device = args.device if args.device != "cuda" else "cuda:0"
    for item in args.shapes.split(","):
        batch, length = map(int, item.split("x"))
        ids = shape_ids(config, item)
        (work / "rows.json").write_text(json.dumps(ids.tolist()))
        if item == args.shapes.split(",")[0]:  # agreement, once
            subprocess.run(forward_command(args.memsweep, work / "model", work / "rows.json", batch, device, args.dtype,
                                           "--out", work / "logits.safetensors"), check=True, capture_output=True)
            from safetensors.torch import load_file
            ours = load_file(work / "logits.safetensors")
            with torch.inference_mode():
                theirs = models["sdpa"](ids.to(args.device)).logits.float().cpu()
            difference = max((ours[f"logits.{i}"] - theirs[i]).abs().max().item() for i in range(batch))
            scale = theirs.abs().max().item()
            print(f"logits agree with transformers (sdpa) to {difference:.3g} (largest |logit| {scale:.3g})")
            if args.dtype == "float32" and difference > 1e-4 * scale:
                sys.exit("memsweep's logits differ from transformers'")
        seconds = {name: time_reference(model, ids.to(args.device), args.repeats) for name, model in models.items()}
        ours = {attention: time_memsweep(args.memsweep, work / "model", work / "rows.json", batch, args.repeats, device,
                                         args.dtype, attention) for attention in ("fused", "eager")}
        flops = forward_flops(config, batch, length) / ours["fused"]
        print(f"{item:>15} {seconds['eager']:9.4f} {seconds['sdpa']:9.4f} {ours['fused']:11.4f} {ours['fused'] / min(seconds.values()):7.3f} "
              f"{flops / 1e12:17.2f} {flops / peak:10.1%} {ours['eager']:17.4f}")


if __name__ == "__main__":
    main()
