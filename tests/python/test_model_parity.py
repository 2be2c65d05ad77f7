"""memsweep forward vs transformers (eager, float32) on random-init tiny GPT-NeoX, GPT-Neo, Llama, Mistral, Qwen2 and
OLMo 2 models, single and sharded safetensors, rows alone and in left-padded batches, with the reference intervention
built from transformers' own attention code (memsweep_testing.reference_intervention), not from memsweep's."""
import functools
import json

import pytest

from memsweep_testing import (load_reference, make_gpt_neo, make_gpt_neox, make_llama, read_logits, reference_logits,
                              run_memsweep, write_tokens)

TOLERANCE = 1e-4

# GPT-NeoX: parallel and sequential residual, partial and full rotary, a head size that is not a power of two
# (72 / 3 = 24, 6 rotary dims), no attention biases. GPT-Neo: windows shorter than the longest row (20 tokens),
# a pattern that starts with "local", several attention_types entries.
CONFIGS = {
    "neox_parallel_rot025": (make_gpt_neox, dict()),
    "neox_sequential_rot100": (make_gpt_neox, dict(use_parallel_residual=False, rotary_pct=1.0)),
    "neox_head24": (make_gpt_neox, dict(hidden_size=72, num_attention_heads=3, intermediate_size=100, num_hidden_layers=5)),
    "neox_sequential_nobias": (make_gpt_neox, dict(use_parallel_residual=False, attention_bias=False)),
    "neo_global_local": (make_gpt_neo, dict()),
    "neo_local_first_mixed": (make_gpt_neo, dict(hidden_size=48, num_heads=3, window_size=3,
                                                 attention_types=[[["local"], 1], [["global", "local", "local"], 1]])),
    # The Llama family: grouped-query ratios 1, 4 and 8; rope_type llama3 (in the 5.x rope_parameters form, a
    # frequency in each of its three bands) and linear (in the older rope_scaling form); tied and untied heads;
    # attention and MLP biases; Mistral's window (5) shorter than the rows; Qwen2's q/k/v biases; OLMo 2's norms.
    "llama_gqa1": (make_llama, dict(num_key_value_heads=4)),
    "llama_gqa4_llama3": (make_llama, dict(num_attention_heads=8, num_key_value_heads=2, rope_parameters=dict(
        rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=200))),
    "llama_gqa8_linear_tied_bias": (make_llama, dict(num_attention_heads=8, num_key_value_heads=1, tie_word_embeddings=True,
                                                     attention_bias=True, mlp_bias=True, rope_theta=500.0,
                                                     rope_scaling=dict(type="linear", factor=2.0))),
    "mistral_window5": (functools.partial(make_llama, family="mistral"), dict(sliding_window=5)),
    "mistral_gqa8_nowindow": (functools.partial(make_llama, family="mistral"), dict(num_attention_heads=8, num_key_value_heads=1)),
    "qwen2_tied": (functools.partial(make_llama, family="qwen2"), dict(tie_word_embeddings=True)),
    "qwen2_gqa4_theta": (functools.partial(make_llama, family="qwen2"), dict(num_attention_heads=8, num_key_value_heads=2,
                                                                             rope_theta=1000000.0)),
    "olmo2": (functools.partial(make_llama, family="olmo2"), dict()),
    "olmo2_gqa1_bias_tied": (functools.partial(make_llama, family="olmo2"), dict(num_key_value_heads=4, attention_bias=True,
                                                                                 tie_word_embeddings=True)),
}

# name -> (short-circuited blocks, zero-attention blocks); "last" is resolved per model.
INTERVENTIONS = {
    "baseline": ((), ()),
    "sc_first": ((0,), ()),
    "sc_middle": ((2,), ()),
    "sc_last": (("last",), ()),
    "sc_several": ((0, 2, "last"), ()),
    "zero_middle": ((), (1,)),
    "sc_and_zero": ((1,), (2,)),
}

ROWS = [[5, 17, 3, 88, 42, 42, 7], [1], [60, 2, 2, 2, 9, 31, 77, 13, 5, 0, 96, 44, 18], list(range(20, 40))]


def resolve(blocks, layers):
    return tuple(layers - 1 if b == "last" else b for b in blocks)


def block_list(blocks):
    return ",".join(map(str, blocks))


@pytest.fixture(scope="module", params=[(name, storage) for name in CONFIGS for storage in ("single", "sharded")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def checkpoint(request, tmp_path_factory):
    name, storage = request.param
    directory = tmp_path_factory.mktemp(f"{name}_{storage}")
    make, overrides = CONFIGS[name]
    make(directory, seed=len(name), shard_size="40KB" if storage == "sharded" else None, **overrides)
    if "linear" in name:  # config.json as transformers 4.x wrote it: rope_theta and rope_scaling {type, factor}
        config = json.loads((directory / "config.json").read_text())
        rope = config.pop("rope_parameters")
        config.update(rope_theta=rope["rope_theta"], rope_scaling={"type": rope["rope_type"], "factor": rope["factor"]})
        (directory / "config.json").write_text(json.dumps(config))
    if storage == "sharded":
        assert (directory / "model.safetensors.index.json").exists() and len(list(directory.glob("model-*.safetensors"))) > 2
    return directory, load_reference(directory)


@pytest.mark.parametrize("intervention", list(INTERVENTIONS))
@pytest.mark.parametrize("batch_size", [1, 3])
def test_logits_match_transformers(checkpoint, intervention, batch_size, tmp_path):
    directory, model = checkpoint
    layers = model.config.num_hidden_layers
    short, zero = (resolve(b, layers) for b in INTERVENTIONS[intervention])
    tokens = write_tokens(tmp_path / "tokens.json", ROWS)
    out = tmp_path / "logits.safetensors"
    args = ["forward", "--model", directory, "--tokens", tokens, "--out", out, "--batch-size", batch_size]
    if short:
        args += ["--short-circuit", block_list(short)]
    if zero:
        args += ["--zero-attention", block_list(zero)]
    run_memsweep(*args)
    ours = read_logits(out, len(ROWS))
    reference = reference_logits(model, ROWS, short, zero)
    worst = max((a - b).abs().max().item() for a, b in zip(ours, reference))
    scale = max(b.abs().max().item() for b in reference)
    print(f"{directory.name} {intervention} batch={batch_size}: max abs diff {worst:.3g} (logits up to {scale:.3g})")
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
    assert worst <= TOLERANCE
    if intervention != "baseline":  # the intervention must have changed something, or this test proves nothing
        plain = reference_logits(model, ROWS)
        assert max((a - b).abs().max().item() for a, b in zip(ours, plain)) > 100 * TOLERANCE


@pytest.mark.parametrize("make", [make_gpt_neox, make_gpt_neo, make_llama], ids=["gpt_neox", "gpt_neo", "llama"])
def test_every_block_short_circuited_logits_depend_only_on_the_token(make, tmp_path):
    """With identity attention everywhere, no position mixes with another: for GPT-NeoX and Llama (rotary positions,
    grouped-query heads) equal tokens give equal logits wherever they stand; for GPT-Neo (learned positions) equal
    (token, position) pairs do."""
    directory = tmp_path / "model"
    make(directory, seed=3)
    rows = [[5, 9, 5, 3, 9, 5, 70, 3], [9, 3, 5, 70], [5, 9, 44, 3]]
    tokens = write_tokens(tmp_path / "tokens.json", rows)
    with_position = make is make_gpt_neo

    def largest_difference_between_equals(blocks):
        out = tmp_path / f"logits_{blocks}.safetensors"
        run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", out, "--short-circuit", blocks)
        seen, worst = {}, 0.0
        for row, logits in zip(rows, read_logits(out, len(rows))):
            for position, (token, vector) in enumerate(zip(row, logits)):
                key = (token, position) if with_position else token
                if key in seen:
                    worst = max(worst, (seen[key] - vector).abs().max().item())
                seen.setdefault(key, vector)
        return worst

    every = largest_difference_between_equals("0-3")
    print(f"{make.__name__}: all blocks short-circuited: largest difference between equals {every:.3g}")
    assert every <= 1e-5
    # The same check with one block left normal fails: the property is the intervention's, not the test's.
    assert largest_difference_between_equals("0-2") > 1e-3


@pytest.mark.parametrize("make", [make_gpt_neox, make_gpt_neo, make_llama], ids=["gpt_neox", "gpt_neo", "llama"])
def test_layers_split_over_devices(make, tmp_path):
    """--devices K splits the layers over K devices (here K CPU placeholders: the same code path as K GPUs, where
    the residual stream and the attention inputs follow each layer's device): logits, the memorization sweep (the
    lower layers reused from a split baseline) and their errors are those of the unsplit model."""
    directory = tmp_path / "model"
    make(directory, seed=5)  # 4 blocks
    tokens = write_tokens(tmp_path / "tokens.json", ROWS)
    logits = {}
    for devices in (1, 2, 4):
        out = tmp_path / f"logits{devices}.safetensors"
        run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", out, "--batch-size", 3,
                     "--short-circuit", "1", "--devices", devices)
        logits[devices] = read_logits(out, len(ROWS))
    for devices in (2, 4):
        worst = max((a - b).abs().max().item() for a, b in zip(logits[devices], logits[1]))
        print(f"{make.__name__} --devices {devices}: max abs diff to one device {worst:.3g}")
        assert worst == 0

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join('{"tokens": %s}\n' % r for r in [list(range(3, 23)), list(range(40, 60))]))
    sweeps = [run_memsweep("eval", "--model", directory, "--task", f"memorization:{rows}", "--option", "prefix=8",
                           "--sweep", "--devices", devices).stdout for devices in (1, 3)]
    import json
    results = [[(r["intervention"], r["metrics"]) for r in json.loads(s)["results"]] for s in sweeps]
    assert results[0] == results[1] and len(results[0]) == 5

    refused = run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "x", "--devices", 5,
                           check=False)
    assert refused.returncode == 1 and "cannot split 4 layers over 5 devices" in refused.stderr
