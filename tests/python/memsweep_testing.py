"""Shared helpers of the Python reference tests: the memsweep binary, tiny random-init models saved as
Hugging Face checkpoints, and reading memsweep's outputs."""
import json
import os
import sqlite3
import subprocess
from contextlib import contextmanager
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
    return _save_random(GPTNeoXForCausalLM, GPTNeoXConfig(**settings), directory, seed, shard_size)


def make_gpt_neo(directory, seed=0, shard_size=None, **overrides):
    """A random-init GPTNeoForCausalLM (tied head, learned positions), float32 safetensors."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    settings = dict(vocab_size=97, hidden_size=64, num_layers=4, num_heads=4, max_position_embeddings=64,
                    attention_types=[[["global", "local"], 2]], window_size=5, initializer_range=0.2,
                    eos_token_id=0, bos_token_id=0)
    settings.update(overrides)
    return _save_random(GPTNeoForCausalLM, GPTNeoConfig(**settings), directory, seed, shard_size)


# The Llama family's transformers classes by model_type; make_llama(..., family="olmo2") builds that one.
LLAMA_FAMILY = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "mistral": ("MistralConfig", "MistralForCausalLM"),
                "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "olmo2": ("Olmo2Config", "Olmo2ForCausalLM")}


def make_llama(directory, seed=0, shard_size=None, family="llama", **overrides):
    """A random-init model of the Llama family (llama, mistral, qwen2, olmo2) in float32: 4 blocks, 4 query heads
    sharing 2 KV heads unless overridden, untied head, float32 safetensors."""
    import transformers

    config_class, model_class = (getattr(transformers, name) for name in LLAMA_FAMILY[family])
    settings = dict(vocab_size=97, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=96, max_position_embeddings=128, initializer_range=0.2, eos_token_id=0,
                    bos_token_id=1, pad_token_id=None, tie_word_embeddings=False)
    if family == "mistral":
        settings["sliding_window"] = None
    settings.update(overrides)
    return _save_random(model_class, config_class(**settings), directory, seed, shard_size)


def _save_random(model_class, config, directory, seed, shard_size):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    # LayerNorm and bias parameters start at 1 and 0; randomize them so the test sees every parameter.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name or "layer_norm" in name or name.endswith("norm.weight") or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(directory, **kwargs)
    return model


def attention_modules(model):
    """The module whose output is a block's attention sublayer output, per block."""
    if model.config.model_type == "gpt_neox":
        return [layer.attention for layer in model.gpt_neox.layers]
    if model.config.model_type in LLAMA_FAMILY:
        return [layer.self_attn for layer in model.model.layers]
    return [block.attn for block in model.transformer.h]


@contextmanager
def reference_intervention(model, short_circuit=(), zero_attention=(), attention="eager"):
    """The paper's intervention built on transformers' own code, independent of memsweep's: short-circuited
    blocks attend each query only to its own key (the identity pattern; in cached decoding the one-hot row on
    the last key; under grouped-query attention each query head gets the value of the KV head it shares, the
    un-repeated values repeated per group as transformers' repeat_kv does), zero-attention blocks have their attention
    module's output replaced by zeros. GPT-NeoX's and the Llama family's other blocks run transformers' `attention`
    implementation ("eager" or "sdpa", memsweep's --attention fused)."""
    import sys

    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.models.llama.modeling_llama import repeat_kv

    short = set(short_circuit)
    patched = []
    interface = model.config.model_type == "gpt_neox" or model.config.model_type in LLAMA_FAMILY
    if interface:
        eager_attention_forward = sys.modules[type(attention_modules(model)[0]).__module__].eager_attention_forward

        def patched_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
            if module.layer_idx in short:
                value = repeat_kv(value, query.shape[1] // value.shape[1])
                return value[:, :, -query.shape[2]:, :].transpose(1, 2).contiguous(), None
            if attention == "sdpa":
                return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
            return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)

        AttentionInterface.register("memsweep_reference", patched_attention)
        # transformers builds no mask for an attention implementation it does not know: give it the real one's.
        AttentionMaskInterface.register("memsweep_reference", ALL_MASK_ATTENTION_FUNCTIONS[attention])
        model.set_attn_implementation("memsweep_reference")
    else:  # GPT-Neo computes attention in its own _attn, as the paper's code patched it
        for b in short:
            module = model.transformer.h[b].attn.attention
            module._attn = lambda query, key, value, attention_mask=None: (value[:, :, -query.shape[2]:, :], None)
            patched.append(module)
    modules = attention_modules(model)
    hooks = [modules[b].register_forward_hook(
        lambda module, inputs, output: (torch.zeros_like(output[0]),) + tuple(output[1:])) for b in zero_attention]
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        for module in patched:
            del module._attn
        if interface:
            model.set_attn_implementation("eager")


def reference_logits(model, rows, short_circuit=(), zero_attention=()):
    """transformers' logits for each row alone (no padding), float32 [T, V] each."""
    with reference_intervention(model, short_circuit, zero_attention), torch.no_grad():
        return [model(torch.tensor([row])).logits[0].float() for row in rows]


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


# The store's per-example columns (schemas/store.md): little-endian, fixed width; a value an example lacks is this NaN.
COLUMN_DTYPES = {"u8": "<u1", "u16": "<u2", "i32": "<i4", "f32": "<f4", "f64": "<f8"}
ABSENT_BITS = {"f32": ("<u4", 0x7fc0dead), "f64": ("<u8", 0x7ff80000dead0000)}


def decode_column(encoding, data):
    """A column's values as Python floats, None where the example has none."""
    import numpy as np
    values = np.frombuffer(data, COLUMN_DTYPES[encoding]).astype(np.float64)
    if encoding in ABSENT_BITS:
        dtype, bits = ABSENT_BITS[encoding]
        absent = np.frombuffer(data, dtype) == bits
        return [None if a else float(v) for v, a in zip(values, absent)]
    return [float(v) for v in values]


def store_examples(store):
    """Every per-example result of a store: {(unit key, intervention, example index): (values, facts, detail)}, read the
    way schemas/store.md says (detail: the JSON, None when not stored). A store before schema 4 (not migrated yet) gives
    its JSON rows, with no facts."""
    with sqlite3.connect(store) as db:
        version, = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        if version < 4:
            return {(key, name, index): (json.loads(values), {}, json.loads(detail)) for key, name, index, values, detail in db.execute(
                "SELECT u.key, i.name, x.example_index, x.values_json, x.detail_json FROM examples x JOIN units u ON u.id = x.unit_id "
                "JOIN interventions i ON i.id = x.intervention_id")}
        out = {}  # every example of a done unit, also one with no numbers (the divergence set under the baseline)
        for key, name, first, count in db.execute(
                "SELECT u.key, i.name, u.first, u.count FROM units u JOIN unit_interventions ui ON ui.unit_id = u.id "
                "JOIN interventions i ON i.id = ui.intervention_id WHERE u.status = 'done'"):
            for index in range(first, first + count):
                out[(key, name, index)] = ({}, {}, None)
        for key, name, first, value_name, fact, encoding, data in db.execute(
                "SELECT u.key, i.name, u.first, v.name, v.fact, v.encoding, v.data FROM example_values v "
                "JOIN units u ON u.id = v.unit_id JOIN interventions i ON i.id = v.intervention_id"):
            for offset, value in enumerate(decode_column(encoding, data)):
                values, facts, _ = out.setdefault((key, name, first + offset), ({}, {}, None))
                if value is not None:
                    (facts if fact else values)[value_name] = value
        for key, name, index, detail in db.execute(
                "SELECT u.key, i.name, x.example_index, x.detail_json FROM example_details x JOIN units u ON u.id = x.unit_id "
                "JOIN interventions i ON i.id = x.intervention_id"):
            values, facts, _ = out[(key, name, index)]
            out[(key, name, index)] = (values, facts, json.loads(detail))
        return out


def example_rows(store):
    """store_examples as a sorted list of (unit key, intervention, example index, values, facts, detail)."""
    return [(*key, *entry) for key, entry in sorted(store_examples(store).items())]


def check_examples_stored_once(db):
    """Per-example columns only for done units, each column one value per example of its unit (a crash between two
    commits must leave neither a half-written unit nor results of an undone one)."""
    widths = {"u8": 1, "u16": 2, "i32": 4, "f32": 4, "f64": 8}
    assert db.execute("SELECT COUNT(*) FROM example_values v JOIN units u ON u.id = v.unit_id WHERE u.status != 'done'").fetchone() == (0,)
    for count, encoding, size in db.execute("SELECT u.count, v.encoding, length(v.data) FROM example_values v JOIN units u ON u.id = v.unit_id"):
        assert size == count * widths[encoding]


def status_metrics(store):
    """`memsweep status --metrics` read back: {(model, dataset, intervention): {metric: (value, standard error or None)}}
    (fixed-width columns: intervention 36, units 1 + 11, each metric 1 + 26 characters; the lines of differences against
    the baseline skipped)."""
    out, table, names = {}, None, []
    for line in run_memsweep("status", store, "--metrics").stdout.splitlines():
        if line.endswith("):") and " on " in line:
            model, rest = line.split(" on ", 1)
            table = (model, rest.split(" (")[0])
        elif table and line.startswith("intervention"):
            names = line[48:].split()
        elif table and line.strip() and not line.startswith("  − baseline") and not line.startswith("± :"):
            row = out.setdefault(table + (line[:36].strip(),), {})
            for j, name in enumerate(names):
                text = line[48 + 27 * j: 48 + 27 * (j + 1)].strip()
                if text:
                    value, _, error = text.partition(" ± ")
                    row[name] = (float(value), float(error) if error else None)
    return out


class LoggedProcess:
    """A child process whose stdout and stderr go to files as they come, for tests that poll a store while a run goes
    on: a run logs every unit, and a pipe nobody reads fills up and blocks it. Offers what the tests use of Popen
    (pid, poll, wait, send_signal, kill, returncode, stdout.read(), communicate)."""

    def __init__(self, command, merge=True, **kwargs):
        import tempfile
        self._out = tempfile.TemporaryFile("w+")
        self._err = None if merge else tempfile.TemporaryFile("w+")
        self._process = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT if merge else self._err, text=True,
                                         **kwargs)
        self.pid = self._process.pid
        self.stdout = self  # job.stdout.read(): what it printed so far

    def read(self, which=None):
        f = which or self._out
        f.flush()
        f.seek(0)
        return f.read()

    @property
    def returncode(self):
        return self._process.returncode

    def poll(self):
        return self._process.poll()

    def wait(self, timeout=None):
        return self._process.wait(timeout=timeout)

    def send_signal(self, sig):
        self._process.send_signal(sig)

    def kill(self):
        self._process.kill()

    def communicate(self, timeout=None):
        self._process.wait(timeout=timeout)
        return self.read(), (None if self._err is None else self.read(self._err))


@contextmanager
def tmpfs(folder, size):
    """A tmpfs of `size` bytes at `folder` (root only); skips the test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): run as root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)
