"""Shared helpers of the Python reference tests: the memsweep binary, tiny random-init models saved as
Hugging Face checkpoints, and reading memsweep's outputs."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

MEMSWEEP_BIN = os.environ.get("MEMSWEEP_BIN", str(Path(__file__).resolve().parents[2] / "build" / "memsweep"))
SHARED_DIR = Path(os.environ.get("MEMSWEEP_SHARED_DIR", str(Path(__file__).resolve().parents[3] / "shared")))


def shared_file(relative):
    """A file of ../shared/data; skips the test with a message when a user's clone has no shared/ beside it."""
    path = SHARED_DIR / "data" / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared/ data folder is not beside this clone)")
    return path


def run_memsweep(*args, check=True):
    """Runs the binary; returns the CompletedProcess. With check, a non-zero exit fails the test with stderr."""
    result = subprocess.run([MEMSWEEP_BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"memsweep {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    if result.returncode < 0:
        raise AssertionError(f"memsweep crashed with signal {-result.returncode}:\n{result.stderr}")
    return result


def make_gpt_neox(directory, seed=0, shard_size=None, **overrides):
    """A random-init GPTNeoXForCausalLM in float32 saved as safetensors (sharded when shard_size is given).
    initializer_range is large so attention is far from uniform and differences show."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    settings = dict(vocab_size=97, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=128, initializer_range=0.2,
                    use_parallel_residual=True, rotary_pct=0.25, eos_token_id=0, bos_token_id=0)
    settings.update(overrides)
    torch.manual_seed(seed)
    config = GPTNeoXConfig(**settings)
    model = GPTNeoXForCausalLM(config).eval()
    # LayerNorm and bias parameters start at 1 and 0; randomize them so the test sees every parameter.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name or "layer_norm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return model


def load_reference(directory):
    """The checkpoint loaded back by transformers, float32, eager attention (architectures.md section 3)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()


def write_tokens(path, rows):
    Path(path).write_text(json.dumps(rows))
    return path


def read_logits(path, count):
    tensors = load_file(str(path))
    return [tensors[f"logits.{i}"] for i in range(count)]
