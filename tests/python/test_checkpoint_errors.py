"""Every broken checkpoint is a clear error (exit 1, a message naming the file and the tensor or key, what
was expected and what was found), never a crash or a silent wrong answer."""
import json
import shutil
import struct

import pytest

from memsweep_testing import make_gpt_neox, make_llama, run_memsweep, write_tokens

LAYER0 = "gpt_neox.layers.0."


def read_safetensors(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def write_safetensors(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def edit_header(edit):
    def corrupt(directory):
        path = directory / "model.safetensors"
        header, body = read_safetensors(path)
        body = edit(header, body) or body
        write_safetensors(path, header, body)
    return corrupt


def truncate(directory):
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def huge_header_length(directory):
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])


def bad_json(directory):
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8] = ord("#")
    path.write_bytes(bytes(data))


def tiny_file(directory):
    (directory / "model.safetensors").write_bytes(b"\x01\x02\x03")


def shift_outside(header, body):
    begin, end = header[LAYER0 + "input_layernorm.weight"]["data_offsets"]
    header[LAYER0 + "input_layernorm.weight"]["data_offsets"] = [begin + len(body), end + len(body)]


def overlap(header, body):
    header[LAYER0 + "input_layernorm.bias"]["data_offsets"] = header[LAYER0 + "input_layernorm.weight"]["data_offsets"]


def set_field(name, field, value):
    def edit(header, body):
        header[name][field] = value
    return edit


def remove(name):
    def edit(header, body):
        del header[name]
    return edit


def add_extra(header, body):
    header["gpt_neox.layers.0.attention.extra_gate"] = {"dtype": "F32", "shape": [4], "data_offsets": [len(body), len(body) + 16]}
    return body + bytes(16)


def edit_config(key, value):
    def corrupt(directory):
        config = json.loads((directory / "config.json").read_text())
        if value is None:
            config.pop(key)
        else:
            config[key] = value
        (directory / "config.json").write_text(json.dumps(config))
    return corrupt


def remove_shard(directory):
    sorted(directory.glob("model-*.safetensors"))[1].unlink()


CASES = {
    # name: (sharded?, corruption, words the message must contain)
    "truncated_file": (False, truncate, ["model.safetensors", "truncated"]),
    "shorter_than_header_length": (False, tiny_file, ["model.safetensors", "fewer than the 8-byte header length"]),
    "header_length_beyond_file": (False, huge_header_length, ["model.safetensors", "header length", "beyond the end"]),
    "bad_json": (False, bad_json, ["model.safetensors", "not valid JSON"]),
    "unknown_dtype": (False, edit_header(set_field(LAYER0 + "input_layernorm.weight", "dtype", "Q32")),
                      ["unknown dtype 'Q32'", LAYER0 + "input_layernorm.weight"]),
    "integer_dtype": (False, edit_header(set_field(LAYER0 + "input_layernorm.weight", "dtype", "I32")),
                      ["has dtype I32", "F32, F16 or BF16", LAYER0 + "input_layernorm.weight"]),
    "span_outside_file": (False, edit_header(shift_outside), ["data area", LAYER0 + "input_layernorm.weight"]),
    "span_size_mismatch": (False, edit_header(set_field(LAYER0 + "input_layernorm.weight", "shape", [65])),
                           ["shape [65] x F32 needs 260 bytes but data_offsets span 256"]),
    "overlapping_spans": (False, edit_header(overlap), ["overlap", LAYER0 + "input_layernorm.weight", LAYER0 + "input_layernorm.bias"]),
    "missing_tensor": (False, edit_header(remove(LAYER0 + "mlp.dense_4h_to_h.bias")),
                       ["no tensor '" + LAYER0 + "mlp.dense_4h_to_h.bias'"]),
    "wrong_shape": (False, edit_header(set_field("gpt_neox.embed_in.weight", "shape", [64, 97])),
                    ["'gpt_neox.embed_in.weight' has shape [64, 97], expected [97, 64]"]),
    "unused_extra_tensor": (False, edit_header(add_extra), ["does not use", "gpt_neox.layers.0.attention.extra_gate"]),
    "missing_shard": (True, remove_shard, ["shard", "is missing", "model.safetensors.index.json"]),
    "config_missing_key": (False, edit_config("hidden_size", None), ["config.json", "'hidden_size'", "missing"]),
    "config_wrong_type": (False, edit_config("num_hidden_layers", "four"), ["config.json", "'num_hidden_layers'", "expected an integer"]),
    "config_unknown_model": (False, edit_config("model_type", "bloom"), ["config.json", "'bloom' is not supported",
                                                                       "gpt_neox, gpt_neo, llama, mistral, qwen2, olmo2"]),
    "config_rope_scaling": (False, edit_config("rope_parameters", {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
                            ["config.json", "rope_type 'linear' is not supported"]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    make_gpt_neox(base / "single", seed=1)
    make_gpt_neox(base / "sharded", seed=1, shard_size="40KB")
    return base


@pytest.mark.parametrize("case", list(CASES))
def test_broken_checkpoint_is_a_clear_error(models, case, tmp_path):
    sharded, corrupt, words = CASES[case]
    directory = tmp_path / "model"
    shutil.copytree(models / ("sharded" if sharded else "single"), directory)
    corrupt(directory)
    assert_forward_refused(directory, case, words, tmp_path)


def assert_forward_refused(directory, case, words, tmp_path):
    """`memsweep forward` on the model exits 1 with a message holding every one of `words`, and writes nothing."""
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3]])
    result = run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "out.safetensors",
                          check=False)
    print(f"{case}: {result.stderr.strip()}")
    assert result.returncode == 1
    for word in words:
        assert word in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_intact_copy_loads(models, tmp_path):
    """The corruptions above are the only reason those runs fail."""
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3]])
    for kind in ("single", "sharded"):
        run_memsweep("forward", "--model", models / kind, "--tokens", tokens, "--out", tmp_path / f"{kind}.safetensors")


@pytest.mark.parametrize("rows, words", [
    ([[1, 2, 97]], ["row 0, position 2", "not a token id"]),
    ([[1], []], ["row 1 is empty"]),
    ([[1, "a"]], ["row 0, position 1"]),
    ({"rows": []}, ["expected a JSON array"]),
])
def test_bad_token_file_is_a_clear_error(models, rows, words, tmp_path):
    tokens = write_tokens(tmp_path / "tokens.json", rows)
    result = run_memsweep("forward", "--model", models / "single", "--tokens", tokens, "--out", tmp_path / "o.safetensors",
                          check=False)
    assert result.returncode == 1, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("flags, words", [
    (["--short-circuit", "4"], ["block 4 does not exist", "4 blocks"]),
    (["--short-circuit", "2-x"], ["'2-x'"]),
    (["--short-circuit", "1", "--zero-attention", "1"], ["block 1 is listed in both"]),
    (["--dtype", "float8"], ["unknown dtype 'float8'"]),
])
def test_bad_flags_are_clear_errors(models, flags, words, tmp_path):
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2]])
    result = run_memsweep("forward", "--model", models / "single", "--tokens", tokens, "--out", tmp_path / "o.safetensors",
                          *flags, check=False)
    assert result.returncode == 1, result.stderr
    for word in words:
        assert word in result.stderr


def test_rotary_settings_are_read_in_both_spellings(models, tmp_path):
    """rope_parameters (5.x) and rotary_pct / rotary_emb_base (4.x) with the same non-default values give the
    same logits, and different ones from the defaults: both spellings are read, not ignored."""
    from memsweep_testing import read_logits

    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3, 4, 5, 6, 7, 8]])
    logits = {}
    for spelling in ("default", "5.x", "4.x"):
        directory = tmp_path / spelling
        shutil.copytree(models / "single", directory)
        config = json.loads((directory / "config.json").read_text())
        if spelling == "5.x":
            config["rope_parameters"] = {"rope_type": "default", "partial_rotary_factor": 0.5, "rope_theta": 500.0}
        elif spelling == "4.x":
            config.pop("rope_parameters")
            config["rotary_pct"], config["rotary_emb_base"] = 0.5, 500
        (directory / "config.json").write_text(json.dumps(config))
        run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / f"{spelling}.safetensors")
        logits[spelling] = read_logits(tmp_path / f"{spelling}.safetensors", 1)[0]
    assert (logits["5.x"] == logits["4.x"]).all()
    assert (logits["5.x"] - logits["default"]).abs().max() > 1e-3


def test_head_may_be_called_lm_head(models, tmp_path):
    """transformers >= 5.14 calls the GPT-NeoX head lm_head in memory; a file may carry either name."""
    from memsweep_testing import read_logits

    directory = tmp_path / "model"
    shutil.copytree(models / "single", directory)
    path = directory / "model.safetensors"
    header, body = read_safetensors(path)
    header["lm_head.weight"] = header.pop("embed_out.weight")
    write_safetensors(path, header, body)
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3, 4, 5, 6]])
    run_memsweep("forward", "--model", models / "single", "--tokens", tokens, "--out", tmp_path / "a.safetensors")
    run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "b.safetensors")
    assert (read_logits(tmp_path / "a.safetensors", 1)[0] == read_logits(tmp_path / "b.safetensors", 1)[0]).all()


LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}


def old_rope_form(scaling):
    """config.json as transformers 4.x wrote it: rope_theta and rope_scaling instead of rope_parameters."""
    def corrupt(directory):
        config = json.loads((directory / "config.json").read_text())
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
        config["rope_scaling"] = scaling
        (directory / "config.json").write_text(json.dumps(config))
    return corrupt


# The Llama family refuses by key what it does not implement (model, corruption, words the message must contain).
LLAMA_CASES = {
    "rope_dynamic": ("llama", edit_config("rope_parameters", {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
                     ["config.json", "'rope_parameters'", "rope_type 'dynamic' is not supported"]),
    "rope_scaling_yarn": ("llama", old_rope_form({"type": "yarn", "factor": 2.0}),
                          ["config.json", "'rope_scaling'", "rope_type 'yarn' is not supported"]),
    "llama3_without_low_freq_factor": ("llama", edit_config("rope_parameters", {k: v for k, v in LLAMA3.items() if k != "low_freq_factor"}),
                                       ["'rope_parameters'", "needs a numeric low_freq_factor"]),
    "partial_rotary": ("llama", edit_config("partial_rotary_factor", 0.5), ["'partial_rotary_factor'", "only 1"]),
    "soft_capping": ("llama", edit_config("attn_logit_softcapping", 50.0), ["'attn_logit_softcapping'", "soft-capping"]),
    "activation": ("llama", edit_config("hidden_act", "gelu"), ["'hidden_act'", "'gelu' is not supported"]),
    "kv_heads": ("llama", edit_config("num_key_value_heads", 3), ["'num_key_value_heads'", "3 does not divide num_attention_heads 4"]),
    "qwen2_sliding_window": ("qwen2", edit_config("use_sliding_window", True), ["'use_sliding_window'", "not supported"]),
    "missing_k_norm": ("olmo2", edit_header(remove("model.layers.1.self_attn.k_norm.weight")),
                       ["no tensor 'model.layers.1.self_attn.k_norm.weight'"]),
    "kv_heads_of_another_model": ("llama", edit_config("num_key_value_heads", 1),
                                  ["'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], expected [16, 64]"]),
}


@pytest.mark.parametrize("case", list(LLAMA_CASES))
def test_llama_family_refuses_what_it_does_not_implement(case, tmp_path):
    family, corrupt, words = LLAMA_CASES[case]
    directory = tmp_path / "model"
    make_llama(directory, seed=1, family=family)
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3]])
    run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "intact.safetensors")
    corrupt(directory)
    assert_forward_refused(directory, case, words, tmp_path)
