"""float16 and bfloat16 runs (weights and activations in that dtype). memsweep keeps what transformers 5.x eager
keeps in float32 — GPT-NeoX's and Llama's softmax, GPT-Neo's q·k scores and softmax, RMSNorm's normalization (and
OLMo 2's weight product and rotary) — and layer norms accumulate in float32 inside libtorch's kernel; matmuls
accumulate as the BLAS does for that dtype. GPT-NeoX runs both attention
paths: --attention fused (libtorch's scaled_dot_product_attention) against transformers' sdpa, --attention eager
against transformers' eager. Two checks per dtype:
- against transformers in the same dtype and attention (same rounding points): max abs diff <= SAME_DTYPE[dtype];
- against transformers in float32: max abs diff <= VS_FLOAT32[dtype] x the largest |logit|, the precision a
  user gives up (bf16 keeps 8 mantissa bits, fp16 11). Parity in float32 (test_model_parity) stays the
  reference; these runs are for speed and memory."""
import pytest
import torch
from transformers import AutoModelForCausalLM

import functools
import json

from memsweep_testing import make_gpt_neo, make_gpt_neox, make_llama, read_logits, reference_intervention, run_memsweep, write_tokens

SAME_DTYPE = {"float16": 1e-2, "bfloat16": 3e-2}  # seen: 0 (the same kernels round at the same points)
# Seen: fp16 <= 0.4% of the logit range, bf16 <= 1.2% (GPT-NeoX) and 6.4% (GPT-Neo: unscaled q·k on random
# weights with initializer_range 0.2 makes attention very peaked, so rounding flips attention weights).
VS_FLOAT32 = {"float16": 1e-2, "bfloat16": 1e-1}
ROWS = [[5, 17, 3, 88, 42, 42, 7], [60, 2, 2, 2, 9, 31, 77, 13, 5, 0, 96, 44, 18], list(range(20, 40))]


@pytest.mark.parametrize("short_circuit", [(), (1,)], ids=["baseline", "sc1"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("make, attention", [(make_gpt_neox, "fused"), (make_gpt_neox, "eager"), (make_gpt_neo, "eager"),
                                             (make_llama, "fused"), (make_llama, "eager"),
                                             (functools.partial(make_llama, family="olmo2"), "eager")],
                         ids=["gpt_neox-fused", "gpt_neox-eager", "gpt_neo", "llama-fused", "llama-eager", "olmo2"])
def test_half_precision_logits(make, attention, dtype, short_circuit, tmp_path):
    directory = tmp_path / "model"
    make(directory, seed=5)
    tokens = write_tokens(tmp_path / "tokens.json", ROWS)
    out = tmp_path / "logits.safetensors"
    args = ["forward", "--model", directory, "--tokens", tokens, "--out", out, "--dtype", dtype, "--batch-size", 2,
            "--attention", attention]
    if short_circuit:
        args += ["--short-circuit", ",".join(map(str, short_circuit))]
    run_memsweep(*args)
    ours = read_logits(out, len(ROWS))

    def reference(torch_dtype):
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype, attn_implementation="eager").eval()
        with reference_intervention(model, short_circuit, attention="sdpa" if attention == "fused" else "eager"), torch.no_grad():
            return [model(torch.tensor([row])).logits[0].float() for row in ROWS]

    same = max((a - b).abs().max().item() for a, b in zip(ours, reference(getattr(torch, dtype))))
    full = reference(torch.float32)
    scale = max(b.abs().max().item() for b in full)
    versus_float32 = max((a - b).abs().max().item() for a, b in zip(ours, full))
    print(f"{json.loads((directory / 'config.json').read_text())['model_type']} {attention} {dtype} sc={short_circuit}: vs transformers {dtype} {same:.3g}, "
          f"vs float32 {versus_float32:.3g} (logits up to {scale:.3g})")
    assert same <= SAME_DTYPE[dtype]
    assert versus_float32 <= VS_FLOAT32[dtype] * scale
