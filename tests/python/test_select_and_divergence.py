"""select-memorized (mining a memorization set) and the divergence diagnostics."""
import json

import numpy as np
import pytest
import torch

from memsweep_testing import (load_reference, make_gpt_neo, make_gpt_neox, make_llama, reference_intervention, run_memsweep,
                              write_tokens)

PREFIX, SUFFIX = 6, 6


@pytest.fixture(scope="module", params=[make_gpt_neox, make_gpt_neo, make_llama], ids=["gpt_neox", "gpt_neo", "llama"])
def checkpoint(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param.__name__)
    request.param(directory, seed=33)
    return directory, load_reference(directory)


def test_select_memorized_keeps_exactly_the_reproduced_windows(checkpoint, tmp_path):
    """A raw uint16 stream of windows, half the model's own continuations (memorized by construction), half
    random: every kept window has EM = 1 in eval, every dropped one EM < 1, offsets point at the window."""
    directory, _ = checkpoint
    generator = torch.Generator().manual_seed(5)
    prefixes = torch.randint(1, 97, (12, PREFIX), generator=generator).tolist()
    continuations = json.loads(run_memsweep("generate", "--model", directory, "--tokens",
                                            write_tokens(tmp_path / "p.json", prefixes), "--new-tokens", SUFFIX,
                                            "--no-eos").stdout)
    stream = []
    for i, (prefix, continuation) in enumerate(zip(prefixes, continuations)):
        suffix = continuation if i % 2 == 0 else torch.randint(1, 97, (SUFFIX,), generator=generator).tolist()
        stream += prefix + suffix
    corpus = tmp_path / "corpus.u16"
    np.array(stream, dtype="<u2").tofile(corpus)
    kept_path = tmp_path / "kept.jsonl"
    summary = json.loads(run_memsweep("select-memorized", "--model", directory, "--input", corpus, "--prefix", PREFIX,
                                      "--suffix", SUFFIX, "--out", kept_path, "--batch-size", 5).stdout)
    kept = [json.loads(line) for line in kept_path.read_text().splitlines()]
    assert summary["windows"] == 12 and summary["kept"] == len(kept)
    for window in kept:
        assert window["tokens"] == stream[window["offset"]:window["offset"] + PREFIX + SUFFIX]

    every = tmp_path / "every.jsonl"
    every.write_text("".join(json.dumps({"tokens": stream[o:o + PREFIX + SUFFIX]}) + "\n"
                             for o in range(0, len(stream), PREFIX + SUFFIX)))
    out = tmp_path / "eval.json"
    run_memsweep("eval", "--model", directory, "--task", f"memorization:{every}", "--option", f"prefix={PREFIX}", "--out", out)
    exact = [e["values"]["exact_match"] for e in json.loads(out.read_text())["results"][0]["examples"]]
    kept_offsets = {w["offset"] for w in kept}
    for index, em in enumerate(exact):
        assert (index * (PREFIX + SUFFIX) in kept_offsets) == (em == 1.0)
    assert all(exact[i] == 1.0 for i in range(0, 12, 2))  # the planted continuations are found
    print(f"{directory.name}: kept {len(kept)} of 12 windows")


@pytest.mark.parametrize("flags", [["--short-circuit", "1"], ["--short-circuit", "2,3"], ["--zero-attention", "0"]],
                         ids=["sc1", "sc2-3", "zero0"])
def test_divergence_matches_transformers(checkpoint, flags, tmp_path):
    directory, model = checkpoint
    rows = [[5, 17, 3, 88, 42, 42, 7], [60, 2, 2, 2, 9, 31, 77, 13, 5], [11, 12, 13]]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    summary = json.loads(run_memsweep("eval", "--model", directory, "--task", f"divergence:{data}", "--batch-size", 2,
                                      *flags).stdout)
    metrics = summary["results"][0]["metrics"]
    blocks = [int(b) for b in flags[1].replace("-", ",").split(",")]
    short = blocks if flags[0] == "--short-circuit" else []
    zero = blocks if flags[0] == "--zero-attention" else []
    first, layers = min(blocks), model.config.num_hidden_layers
    if model.config.model_type == "gpt_neox":
        layer_modules, final_norm = model.gpt_neox.layers, model.gpt_neox.final_layer_norm
    elif model.config.model_type == "gpt_neo":
        layer_modules, final_norm = model.transformer.h, model.transformer.ln_f
    else:  # the Llama family
        layer_modules, final_norm = model.model.layers, model.model.norm
    head = model.get_output_embeddings()

    def residuals(row):  # each layer's output before the final norm, via hooks on transformers' own layers
        outputs = []
        hooks = [m.register_forward_hook(lambda mod, i, o: outputs.append((o[0] if isinstance(o, tuple) else o)[0]))
                 for m in layer_modules]
        try:
            with torch.no_grad():
                model(torch.tensor([row]))
        finally:
            for h in hooks:
                h.remove()
        return outputs

    sums, positions = {}, 0
    for row in rows:
        base = residuals(row)
        with reference_intervention(model, short, zero):
            changed = residuals(row)
        positions += len(row)
        for l in range(first, layers):
            relative = ((base[l] - changed[l]).norm(dim=-1) / base[l].norm(dim=-1)).sum().item()
            with torch.no_grad():
                p = torch.log_softmax(head(final_norm(base[l])), -1)
                q = torch.log_softmax(head(final_norm(changed[l])), -1)
            kl = (p.exp() * (p - q)).sum(-1).sum().item()
            sums[f"relative_change.{l:02d}"] = sums.get(f"relative_change.{l:02d}", 0) + relative
            sums[f"kl.{l:02d}"] = sums.get(f"kl.{l:02d}", 0) + kl
    worst = 0.0
    for key, total in sums.items():
        worst = max(worst, abs(metrics[key] - total / positions))
    assert not any(k.endswith(f".{l:02d}") for k in metrics for l in range(first))  # layers below b: not recorded
    print(f"{directory.name} {flags}: layers {first}..{layers - 1}, max abs diff vs transformers {worst:.3g}; "
          + ", ".join(f"{k}={metrics[k]:.3f}" for k in sorted(sums) if k.startswith("relative")))
    assert worst <= 1e-4
    assert metrics[f"relative_change.{first:02d}"] > 0
