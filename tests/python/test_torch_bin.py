"""memsweep reads torch.save checkpoints (pytorch_model.bin, single and sharded) to exactly the logits it gets
from the same weights saved as safetensors, and refuses pickles that name anything but a state dict's globals —
without running them: the payloads below do run under torch.load(weights_only=False), and memsweep leaves no
trace of them."""
import copy
import json
import os
import shutil
import uuid
import zipfile

import pytest
import torch

from memsweep_testing import make_gpt_neox, read_logits, run_memsweep, write_tokens

ROWS = [[5, 17, 3, 88, 42, 42, 7], [1], [60, 2, 2, 2, 9, 31, 77, 13, 5, 0, 96, 44, 18]]
LAYER0 = "gpt_neox.layers.0."
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def copy_config(source, target):
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def hub_state_dict(model):
    """The state dict under the names the Hub's files use: transformers >= 5.14 calls the head lm_head in
    memory, Pythia's pytorch_model.bin files call it embed_out."""
    return {("embed_out.weight" if name == "lm_head.weight" else name): tensor
            for name, tensor in model.state_dict().items()}


def save_sharded(state_dict, directory, shard_bytes=40_000):
    """What transformers 4.x save_pretrained(safe_serialization=False, max_shard_size=...) wrote: shards
    pytorch_model-0000k-of-0000n.bin in state-dict order and pytorch_model.bin.index.json."""
    shards, current, size = [], {}, 0
    for name, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    weight_map = {}
    for k, shard in enumerate(shards, 1):
        file = f"pytorch_model-{k:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, directory / file)
        weight_map.update({name: file for name in shard})
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                        "weight_map": weight_map}))
    return len(shards)


def views_state_dict(model):
    """The model's weights with the storage layouts a .bin can have and safetensors cannot: embed_out is the
    same tensor as embed_in (tied: one storage, pickled once), a transposed-back copy (non-contiguous strides),
    and layer 0's layernorm weights and biases as views at offsets into one shared storage."""
    state = hub_state_dict(model)
    state["embed_out.weight"] = state["gpt_neox.embed_in.weight"]
    name = LAYER0 + "attention.dense.weight"
    state[name] = state[name].t().contiguous().t()
    assert not state[name].is_contiguous()
    names = [LAYER0 + n for n in ("input_layernorm.weight", "input_layernorm.bias",
                                  "post_attention_layernorm.weight", "post_attention_layernorm.bias")]
    packed = torch.cat([state[n] for n in names])
    for i, n in enumerate(names):
        state[n] = packed[i * 64:(i + 1) * 64]
    return state


def pythia_era_state_dict(model):
    """What transformers 4.2x wrote for Pythia: per-layer buffers beside the weights — a bool causal mask
    (BoolStorage), a 0-dimensional masked_bias, rotary inv_freq — which memsweep reads and leaves unused."""
    state = hub_state_dict(model)
    for i in range(model.config.num_hidden_layers):
        prefix = f"gpt_neox.layers.{i}.attention."
        state[prefix + "bias"] = torch.tril(torch.ones(128, 128, dtype=torch.bool)).view(1, 1, 128, 128)
        state[prefix + "masked_bias"] = torch.tensor(-1e9)
        state[prefix + "rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, 4, 2).float() / 4))
    return state


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_bin")
    model = make_gpt_neox(root / "f32_safetensors", seed=7)
    return root, model


def forward(directory, tmp_path, tag):
    tokens = write_tokens(tmp_path / "tokens.json", ROWS)
    out = tmp_path / f"{tag}.safetensors"
    run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", out, "--dtype", "float32",
                 "--batch-size", "2")
    return read_logits(out, len(ROWS))


@pytest.mark.parametrize("layout", ["single", "sharded", "views", "pythia_buffers"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_bin_logits_equal_safetensors_logits(base, layout, dtype, tmp_path):
    """The same weights saved both ways give identical logits (run in float32: f16/bf16 weights were rounded
    when saved, and the safetensors reference holds the same rounded values)."""
    root, model = base
    rounded = copy.deepcopy(model).to(DTYPES[dtype])
    reference = tmp_path / "safetensors"
    if layout == "views":  # the tie must be in the reference too
        with torch.no_grad():
            rounded.lm_head.weight.copy_(rounded.gpt_neox.embed_in.weight)
    rounded.save_pretrained(reference)
    directory = tmp_path / "bin"
    copy_config(reference, directory)
    if layout == "single":
        torch.save(hub_state_dict(rounded), directory / "pytorch_model.bin")
    elif layout == "sharded":
        assert save_sharded(hub_state_dict(rounded), directory, shard_bytes=40_000 // DTYPES[dtype].itemsize) > 2
    elif layout == "views":
        torch.save(views_state_dict(rounded), directory / "pytorch_model.bin")
    else:
        torch.save(pythia_era_state_dict(rounded), directory / "pytorch_model.bin")
    assert not list(directory.glob("*.safetensors"))

    expected = forward(reference, tmp_path, "safetensors")
    found = forward(directory, tmp_path, "bin")
    worst = max((e - f).abs().max().item() for e, f in zip(expected, found))
    print(f"{layout}/{dtype}: max |bin - safetensors| = {worst:.3g}")
    assert worst == 0.0


def test_safetensors_take_precedence(base, tmp_path):
    root, _ = base
    directory = tmp_path / "both"
    shutil.copytree(root / "f32_safetensors", directory)
    (directory / "pytorch_model.bin").write_bytes(b"not read")
    assert forward(directory, tmp_path, "both")[0].shape == (len(ROWS[0]), 97)


# --- malicious and broken files ---------------------------------------------------------------------------


class Payload:
    """Pickles as a call of `function` on `args`: what a malicious checkpoint hides in a state dict value."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def torch_layout_zip(path, pickle_bytes, storages=()):
    """A zip in torch.save's layout whose data.pkl is written by hand."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, data in storages:
            archive.writestr(f"archive/data/{key}", data)


def short_str(text):
    return b"\x8c" + bytes([len(text)]) + text.encode()


def via_torch_save(function, command):
    """torch.save of a state dict whose last value calls `function(command)` when unpickled."""
    def write(path, state, marker):
        torch.save({**state, "evil": Payload(function, command.format(marker=marker))}, path)
    return write


def global_reduce(module, name):
    """data.pkl: PROTO 2, GLOBAL module name, ('touch marker',), REDUCE, STOP — a bare call, no state dict."""
    def write(path, state, marker):
        command = f"touch {marker}".encode()
        torch_layout_zip(path, b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + len(command).to_bytes(4, "little")
                         + command + b"\x85R.")
    return write


def stack_global_reduce(module, name):
    """data.pkl at protocol 4: STACK_GLOBAL module name, REDUCE with the command — inside an OrderedDict."""
    def write(path, state, marker):
        command = f"touch {marker}"
        code = ("__import__('os').system(" + repr(command) + ")") if name == "eval" else command
        pickle_bytes = (b"\x80\x04" + short_str("collections") + short_str("OrderedDict") + b"\x93)R("
                        + short_str("w") + short_str(module) + short_str(name) + b"\x93" + short_str(code)
                        + b"\x85Ru.")
        torch_layout_zip(path, pickle_bytes)
    return write


MALICIOUS = {
    # name: (writer, the global memsweep must name as refused)
    # pickle names os.system by its home module, posix, and at protocol 2 builtins as __builtin__.
    "os_system_in_state_dict": (via_torch_save(os.system, "touch {marker}"), "posix.system"),
    "eval_in_state_dict": (via_torch_save(eval, "__import__('os').system('touch {marker}')"), "__builtin__.eval"),
    "os_system_global": (global_reduce("os", "system"), "os.system"),
    "posix_system_global": (global_reduce("posix", "system"), "posix.system"),
    "builtins_eval_stack_global": (stack_global_reduce("builtins", "eval"), "builtins.eval"),
    "os_system_stack_global": (stack_global_reduce("os", "system"), "os.system"),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_pickle_is_refused_and_not_run(base, case, tmp_path):
    root, model = base
    writer, refused = MALICIOUS[case]
    marker = tmp_path / f"pwned_{uuid.uuid4().hex}"
    directory = tmp_path / "model"
    copy_config(root / "f32_safetensors", directory)
    writer(directory / "pytorch_model.bin", hub_state_dict(model), marker)
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3]])
    result = run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "o.safetensors",
                          check=False)
    print(f"{case}: {result.stderr.strip()}")
    assert result.returncode == 1
    assert f"global '{refused}' is refused" in result.stderr
    assert "pytorch_model.bin" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()

    # Control: the payload is live — Python's full unpickler runs it.
    try:
        torch.load(directory / "pytorch_model.bin", weights_only=False)
    except Exception:
        pass  # the bare pickles fail after the call, once their result is not a dict
    assert marker.exists(), "the test payload did not run under torch.load(weights_only=False)"


def truncate(directory, state):
    torch.save(state, directory / "pytorch_model.bin")
    data = (directory / "pytorch_model.bin").read_bytes()
    (directory / "pytorch_model.bin").write_bytes(data[:len(data) // 2])


def missing_shard(directory, state):
    save_sharded(state, directory)
    sorted(directory.glob("pytorch_model-*.bin"))[1].unlink()


def unassigned_tensor(directory, state):
    save_sharded(state, directory)
    index = json.loads((directory / "pytorch_model.bin.index.json").read_text())
    del index["weight_map"][LAYER0 + "attention.dense.bias"]
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def legacy_format(directory, state):
    torch.save(state, directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)


def compressed(directory, state):
    torch.save(state, directory / "plain.bin")
    with zipfile.ZipFile(directory / "plain.bin") as source, \
            zipfile.ZipFile(directory / "pytorch_model.bin", "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    (directory / "plain.bin").unlink()


def training_checkpoint(directory, state):
    torch.save({"model": state, "step": 1000}, directory / "pytorch_model.bin")


def missing_tensor(directory, state):
    del state[LAYER0 + "mlp.dense_4h_to_h.bias"]
    torch.save(state, directory / "pytorch_model.bin")


BROKEN = {
    "truncated": (truncate, ["pytorch_model.bin", "truncated"]),
    "missing_shard": (missing_shard, ["shard", "pytorch_model-00002-of-", "is missing", "pytorch_model.bin.index.json"]),
    "tensor_not_in_index": (unassigned_tensor, ["'" + LAYER0 + "attention.dense.bias' is not assigned to this shard",
                                                "pytorch_model.bin.index.json"]),
    "legacy_format": (legacy_format, ["pytorch_model.bin", "legacy torch.save format", "re-save"]),
    "compressed_entries": (compressed, ["pytorch_model.bin", "is compressed (method 8, deflate)"]),
    "training_checkpoint": (training_checkpoint, ["entry 'model'", "is itself a dict", "checkpoint['model']"]),
    "missing_tensor": (missing_tensor, ["no tensor '" + LAYER0 + "mlp.dense_4h_to_h.bias'"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_bin_is_a_clear_error(base, case, tmp_path):
    root, model = base
    corrupt, words = BROKEN[case]
    directory = tmp_path / "model"
    copy_config(root / "f32_safetensors", directory)
    corrupt(directory, hub_state_dict(model))
    tokens = write_tokens(tmp_path / "tokens.json", [[1, 2, 3]])
    result = run_memsweep("forward", "--model", directory, "--tokens", tokens, "--out", tmp_path / "o.safetensors",
                          check=False)
    print(f"{case}: {result.stderr.strip()}")
    assert result.returncode == 1
    for word in words:
        assert word in result.stderr
