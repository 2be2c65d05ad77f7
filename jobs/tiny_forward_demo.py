"""Until the embedded demo study lands: makes a tiny random-init Pythia-shaped checkpoint (transformers,
safetensors), runs `memsweep forward` on it as is and with each block's attention short-circuited, and prints
how much each intervention moves the next-token predictions. Usage: tiny_forward_demo.py MEMSWEEP WORKDIR"""
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

memsweep, workdir = sys.argv[1], Path(sys.argv[2])
workdir.mkdir(parents=True, exist_ok=True)
model_dir = workdir / "tiny-pythia"
torch.manual_seed(0)
config = GPTNeoXConfig(vocab_size=512, hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                       intermediate_size=512, initializer_range=0.15, rotary_pct=0.25)
GPTNeoXForCausalLM(config).save_pretrained(model_dir)
rows = torch.randint(0, 512, (8, 48), generator=torch.Generator().manual_seed(1)).tolist()
(workdir / "tokens.json").write_text(json.dumps(rows))


def run(name, *flags):
    out = workdir / f"{name}.safetensors"
    subprocess.run([memsweep, "forward", "--model", model_dir, "--tokens", workdir / "tokens.json", "--out", out,
                    "--batch-size", "4", *flags], check=True)
    logits = load_file(str(out))
    return torch.stack([logits[f"logits.{i}"] for i in range(len(rows))])


baseline = run("baseline")
print(f"\nmodel {model_dir} ({config.num_hidden_layers} blocks), {len(rows)} rows x {len(rows[0])} tokens")
print(f"{'intervention':<22}{'argmax changed':>16}{'mean KL(base||int)':>20}")
for block in range(config.num_hidden_layers):
    logits = run(f"short_circuit_{block}", "--short-circuit", str(block))
    changed = (logits.argmax(-1) != baseline.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(logits.log_softmax(-1), baseline.log_softmax(-1), log_target=True,
                                    reduction="none").sum(-1).mean().item()
    print(f"{'short-circuit ' + str(block):<22}{changed:>15.1%}{kl:>20.4f}")
