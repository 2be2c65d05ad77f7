"""Benchmark tasks against lm-evaluation-harness (pip-installed, HF backend, fully offline): the harness runs its own
installed task YAMLs (each test YAML `include:`s the harness's file and overrides only the data files) on a
random-init tiny GPT-NeoX with the real GPT-NeoX-20B tokenizer; memsweep evaluates the same files through
`memsweep eval`. Per document: loglikelihoods within 1e-4, the same is-greedy, acc and acc_norm; per task the same
metrics, at batch sizes 1 and 16 on both sides. Data: the first 40 rows of the real PIQA and ARC-Easy files in
../shared/data and the small hand-written files of tests/data/benchmarks (HF schema).

Also: grouping (shared context passes, batches, token budget, below-block reuse across interventions) never changes
a score, bad data is an error naming the file and line, and per tokenizer family (Llama 2, Mistral, Llama 3) memsweep's
requests (`eval --print-requests`) are the harness's token ids, its BOS and prefix token included."""
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from memsweep_testing import make_gpt_neox, make_llama, run_memsweep, shared_file

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
ROWS = 40  # of each real file, for CI time
BATCH_SIZES = (1, 16)
MAX_LENGTH = 128  # the tiny model's max_position_embeddings: long documents are truncated / rolled in windows


def harness_tasks_dir():
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


# memsweep kind -> (harness YAML to include or None, data file, split, memsweep options, extra YAML keys)
GENERIC_OPTIONS = {"context": "Question: {{question}}\nAnswer: ", "choices": "choices.text", "label": "answerKey",
                   "label_keys": "choices.label", "delimiter": ""}
CASES = {
    "piqa": ("piqa/piqa.yaml", "piqa.jsonl", "validation", {}, {}),
    "arc_easy": ("arc/arc_easy.yaml", "arc_easy.jsonl", "test", {}, {"tag": []}),
    "arc_challenge": ("arc/arc_challenge.yaml", DATA / "arc_challenge.jsonl", "test", {}, {"tag": []}),
    "hellaswag": ("hellaswag/hellaswag.yaml", DATA / "hellaswag.jsonl", "validation", {}, {"tag": []}),
    "winogrande": ("winogrande/default.yaml", DATA / "winogrande.jsonl", "validation", {}, {}),
    "sciq": ("sciq/sciq.yaml", DATA / "sciq.jsonl", "test", {}, {}),
    "openbookqa": ("openbookqa/openbookqa.yaml", DATA / "openbookqa.jsonl", "test", {}, {}),
    "boolq": ("super_glue/boolq/default.yaml", DATA / "boolq.jsonl", "validation", {}, {"tag": []}),
    "lambada_openai": ("lambada/lambada_openai.yaml", DATA / "lambada.jsonl", "test", {}, {"tag": []}),
    # Not harness tasks: YAMLs written here with the same prompt as the memsweep options.
    "multiple_choice": (None, "arc_easy.jsonl", "test", GENERIC_OPTIONS, {
        "output_type": "multiple_choice", "doc_to_text": GENERIC_OPTIONS["context"],
        "doc_to_choice": "{{choices.text}}", "doc_to_target": "{{choices.label.index(answerKey)}}",
        "target_delimiter": "", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}),
    "rolling_loglikelihood": (None, DATA / "rolling.jsonl", "test", {}, {
        "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "text",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}]}),
}


def write_harness_tasks(root, kinds):
    """The first ROWS rows of the real PIQA and ARC-Easy files in root, and a harness task YAML per kind in root/tasks.
    Returns that folder and each kind's data file."""
    for source, name in ((shared_file("piqa/validation.jsonl"), "piqa.jsonl"), (shared_file("arc-easy/test.jsonl"), "arc_easy.jsonl")):
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[:ROWS]
        (root / name).write_text("".join(lines), encoding="utf-8")
    yaml_dir = root / "tasks"
    yaml_dir.mkdir()
    files = {}
    for kind in kinds:
        include, data, split, _, extra = CASES[kind]
        files[kind] = Path(data) if Path(data).is_absolute() else root / data
        config = {"task": f"memsweep_{kind}", "dataset_path": "json", "dataset_name": None,
                  "dataset_kwargs": {"data_files": {split: str(files[kind])}},
                  "training_split": None, "validation_split": split if split == "validation" else None,
                  "test_split": split if split == "test" else None, "fewshot_split": None, **extra}
        if include:
            config = {"include": str(harness_tasks_dir() / include), **config}
        (yaml_dir / f"memsweep_{kind}.yaml").write_text(json.dumps(config))  # JSON is YAML
    os.environ["HF_DATASETS_CACHE"] = str(root / "datasets-cache")
    return yaml_dir, files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model (with the real tokenizer), the data files, and the harness's results at each batch size."""
    tokenizer = shared_file("tokenizers/gpt-neox-20b/tokenizer.json")
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (tests/python/requirements.txt)")
    root = tmp_path_factory.mktemp("benchmarks")
    model_dir = root / "model"
    make_gpt_neox(model_dir, vocab_size=50304, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=MAX_LENGTH)
    shutil.copy(tokenizer, model_dir / "tokenizer.json")
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    yaml_dir, files = write_harness_tasks(root, CASES)

    import lm_eval
    from lm_eval.tasks import TaskManager

    harness = {}
    for batch_size in BATCH_SIZES:
        output = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=[f"memsweep_{k}" for k in CASES],
            task_manager=TaskManager(include_path=str(yaml_dir)), batch_size=batch_size, device="cpu",
            log_samples=True)
        harness[batch_size] = output
    return {"root": root, "model": model_dir, "files": files, "harness": harness}


def memsweep_eval(setup, kind, *args, options=None):
    out = setup["root"] / f"out-{kind}-{abs(hash(args + tuple(sorted((options or {}).items()))))}.json"
    option_args = []
    for key, value in {**CASES[kind][3], **(options or {})}.items():
        option_args += ["--option", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    run_memsweep("eval", "--model", setup["model"], "--task", f"{kind}:{setup['files'][kind]}", *option_args, *args,
                 "--out", out)
    return json.loads(out.read_text())


def harness_documents(output, kind):
    """Per document (in file order): the (loglikelihood, is_greedy) of each request, or the rolling loglikelihood."""
    samples = sorted(output["samples"][f"memsweep_{kind}"], key=lambda s: s["doc_id"])
    return [[tuple(r) if isinstance(r, (list, tuple)) else (r, None) for r in s["filtered_resps"]] for s in samples]


def harness_metrics(output, kind):
    """The task's metrics and their standard errors ("acc_stderr": a number, or "N/A" where the harness has none)."""
    return {key.split(",")[0]: value for key, value in output["results"][f"memsweep_{kind}"].items() if key.endswith(",none")}


def request_facts(facts, name):
    """A multiple-choice document's per-request facts in choice order: name.0, name.1, ..."""
    return [facts[f"{name}.{c}"] for c in range(sum(key.startswith(name + ".") for key in facts))]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("kind", list(CASES))
def test_same_numbers_as_the_harness(setup, kind, batch_size):
    ours = memsweep_eval(setup, kind, "--batch-size", batch_size)["results"][0]
    theirs_docs = harness_documents(setup["harness"][batch_size], kind)
    examples = ours["examples"]
    assert len(examples) == len(theirs_docs) > 0
    worst = worst_relative = 0.0
    for example, theirs in zip(examples, theirs_docs):
        values, facts = example["values"], example["facts"]
        if kind == "rolling_loglikelihood":
            ours_lls, ours_greedy = [values["loglikelihood"]], None
        elif kind == "lambada_openai":
            ours_lls, ours_greedy = [values["loglikelihood"]], [bool(values["acc"])]
        else:
            ours_lls, ours_greedy = request_facts(facts, "loglikelihood"), [bool(g) for g in request_facts(facts, "is_greedy")]
        their_lls = [ll for ll, _ in theirs]
        assert len(ours_lls) == len(their_lls), f"document {example['index']}: {len(ours_lls)} vs {len(their_lls)} requests"
        worst = max(worst, max(abs(a - b) for a, b in zip(ours_lls, their_lls)))
        worst_relative = max(worst_relative, max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(ours_lls, their_lls)))
        if ours_greedy is not None:
            assert ours_greedy == [bool(g) for _, g in theirs], f"document {example['index']}: is_greedy differs"
    print(f"{kind} batch {batch_size}: {len(examples)} documents, max |loglikelihood difference| {worst:.3g} "
          f"(relative {worst_relative:.3g})")
    # 1e-4, or one part in 1e6 for long sums: a float32 sum near -1400 (a 128-token rolling window) moves in steps
    # of 1.2e-4, and the harness's own results differ by one such step between batch sizes.
    assert worst <= 1e-4 or worst_relative <= 1e-6

    theirs = harness_metrics(setup["harness"][batch_size], kind)
    metrics = ours["metrics"]
    largest_stderr = 0.0
    for name, value in theirs.items():
        if value == "N/A":  # word/byte perplexity, bits per byte: the harness has no standard error, nor has memsweep
            assert name not in metrics, f"{kind}: memsweep reports {name}, the harness has none"
            continue
        assert name in metrics, f"{kind}: the harness reports {name}, memsweep does not"
        if name.endswith("_stderr"):
            largest_stderr = max(largest_stderr, abs(metrics[name] - value) / value if value else abs(metrics[name]))
            # acc's: the same documents' 0/1 values; perplexity's: the harness's own bootstrap (the same draws) over
            # loglikelihoods that agree within float32 rounding.
            tolerance = 1e-9 if name in ("acc_stderr", "acc_norm_stderr") else 1e-4
            assert metrics[name] == pytest.approx(value, rel=tolerance), f"{kind} {name}: {metrics[name]} vs {value}"
        elif name in ("acc", "acc_norm"):
            assert metrics[name] == pytest.approx(value, abs=1e-12), f"{kind} {name}: {metrics[name]} vs {value}"
        else:
            assert metrics[name] == pytest.approx(value, rel=1e-5), f"{kind} {name}: {metrics[name]} vs {value}"
    print(f"{kind} batch {batch_size}: {json.dumps({k: metrics[k] for k in theirs if k in metrics})}; largest relative "
          f"difference of a standard error from the harness's: {largest_stderr:.2e}")


@pytest.mark.parametrize("kind", ["piqa", "hellaswag", "sciq", "lambada_openai", "rolling_loglikelihood"])
def test_grouping_never_changes_a_score(setup, kind):
    """Shared contexts, batches of 16 under a small token budget and below-block reuse across interventions
    against every request alone in batches of 1 and every layer computed per intervention."""
    grouped = memsweep_eval(setup, kind, "--batch-size", 16, "--sweep", options={"token_budget": 600})
    alone = memsweep_eval(setup, kind, "--batch-size", 1, "--sweep", "--no-reuse", options={"share_contexts": False})
    pairs = []
    for a, b in zip(grouped["results"], alone["results"]):
        assert a["intervention"] == b["intervention"]
        for x, y in zip(a["examples"], b["examples"]):
            for key, value in x["values"].items():
                if key in ("acc", "acc_norm"):
                    assert value == y["values"][key], f"{a['intervention']} document {x['index']}: {key} differs"
                else:
                    pairs.append((value, y["values"][key]))
            if "loglikelihood.0" in x["facts"]:
                pairs += zip(request_facts(x["facts"], "loglikelihood"), request_facts(y["facts"], "loglikelihood"))
                assert request_facts(x["facts"], "is_greedy") == request_facts(y["facts"], "is_greedy")
    worst = max(abs(p - q) for p, q in pairs)
    worst_relative = max(abs(p - q) / max(abs(q), 1e-30) for p, q in pairs)
    print(f"{kind}: {len(grouped['results'])} interventions, max |difference| grouped vs alone {worst:.3g} "
          f"(relative {worst_relative:.3g})")
    # Only float32 rounding may differ: a sum near -500 moves in steps of 6e-5.
    assert all(abs(p - q) <= max(1e-5, 1e-6 * abs(q)) for p, q in pairs)



@pytest.mark.parametrize("kind", ["piqa", "rolling_loglikelihood"])
def test_layers_split_over_devices_give_the_same_scores(setup, kind):
    """--devices 2 (CPU placeholders, the code path of two GPUs): the passes' last-layer outputs come from the second
    device, where the output head runs on the whole batch's rows; every score and greedy flag equals the unsplit
    sweep's, bit for bit."""
    one = memsweep_eval(setup, kind, "--batch-size", 16, "--sweep")
    split = memsweep_eval(setup, kind, "--batch-size", 16, "--sweep", "--devices", 2)
    assert [r["intervention"] for r in one["results"]] == [r["intervention"] for r in split["results"]]
    assert [r["examples"] for r in one["results"]] == [r["examples"] for r in split["results"]]
    assert [r["metrics"] for r in one["results"]] == [r["metrics"] for r in split["results"]]

BAD_DATA = [
    ("piqa", '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n{"goal": "g", "sol1": "a"\n', "line 2", "JSON"),
    ("piqa", '{"goal": "g", "sol1": "a", "label": 0}\n', "line 1", "missing field 'sol2'"),
    ("piqa", '\n{"goal": "g", "sol1": "a", "sol2": "b", "label": 2}\n', "line 2", "invalid label"),
    ("arc_easy", '{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}\n',
     "line 1", "invalid label"),
    ("winogrande", '{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}\n', "line 1", "'_'"),
    ("hellaswag", '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["1", "2"], "label": "7"}\n',
     "line 1", "invalid label"),
    ("lambada_openai", '[1, 2]\n', "line 1", "JSON object"),
    ("boolq", '{"passage": "p", "question": 3, "label": 1}\n', "line 1", "must be a string"),
]


@pytest.mark.parametrize("kind,text,line,problem", BAD_DATA)
def test_bad_data_names_file_and_line(setup, tmp_path, kind, text, line, problem):
    path = tmp_path / f"bad-{kind}.jsonl"
    path.write_text(text)
    result = run_memsweep("eval", "--model", setup["model"], "--task", f"{kind}:{path}", check=False)
    assert result.returncode != 0
    assert f"{path}, {line}" in result.stderr and problem in result.stderr, result.stderr


def test_bad_options_are_errors(setup):
    result = run_memsweep("eval", "--model", setup["model"], "--task", f"piqa:{setup['files']['piqa']}",
                          "--option", "tag=maths", check=False)
    assert result.returncode != 0 and "'tag' must be" in result.stderr, result.stderr
    result = run_memsweep("eval", "--model", setup["model"], "--task", f"piqa:{setup['files']['piqa']}",
                          "--option", "prefix=3", check=False)
    assert result.returncode != 0 and "unknown option 'prefix'" in result.stderr, result.stderr
    result = run_memsweep("eval", "--model", setup["model"], "--task",
                          f"multiple_choice:{setup['files']['multiple_choice']}", check=False)
    assert result.returncode != 0 and "needs the options context, choices and label" in result.stderr, result.stderr
    result = run_memsweep("eval", "--model", setup["model"], "--task", f"memorization:{setup['files']['piqa']}",
                          "--print-requests", check=False)
    assert result.returncode != 0 and "--print-requests is for benchmark kinds; 'memorization' is not one" in result.stderr


# Per family, the tokenizer folder the harness's AutoTokenizer reads (the shared files; Llama 2's Hub folder also holds a
# tokenizer_config.json naming LlamaTokenizer, whose fields are Mistral's real one: it is written here) and the texts
# where transformers 5.x's LlamaTokenizer and the tokenizer.json alone give different ids (rolling.jsonl's text that
# starts with a space).
REQUEST_FAMILIES = {
    "llama-2": ["llama-2/tokenizer.json", "mistral/tokenizer_config.json"],
    "mistral": ["mistral/tokenizer.json", "mistral/tokenizer_config.json", "mistral/special_tokens_map.json"],
    "llama-3": ["llama-3/tokenizer.json", "llama-3/tokenizer_config.json"],
    "qwen2": ["qwen2/tokenizer.json"],
    "olmo-2": ["olmo-2/tokenizer.json"],
}
# The shared folders of Qwen2 and OLMo 2 hold the tokenizer.json only: their Hub folders' tokenizer_config.json name
# these classes (transformers 5.x builds Qwen2's pipeline as its file has it, OLMo 2's with GPT-2's pre-tokenizer).
WRITTEN_CONFIGS = {
    "qwen2": {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "unk_token": None, "add_prefix_space": False},
    "olmo-2": {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": "<|pad|>", "unk_token": "<|endoftext|>", "add_bos_token": False},
}
REQUEST_KINDS = ["piqa", "arc_easy", "rolling_loglikelihood"]


@pytest.fixture(scope="module")
def request_tasks(tmp_path_factory):
    """The harness's instances (documents as (context, continuation) texts) of each kind, and memsweep's data files."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (tests/python/requirements.txt)")
    from lm_eval.tasks import TaskManager, get_task_dict

    yaml_dir, files = write_harness_tasks(tmp_path_factory.mktemp("request_tasks"), REQUEST_KINDS)
    tasks = get_task_dict([f"memsweep_{kind}" for kind in REQUEST_KINDS], TaskManager(include_path=str(yaml_dir)))
    instances = {}
    for kind in REQUEST_KINDS:
        tasks[f"memsweep_{kind}"].build_all_requests(rank=0, world_size=1)
        instances[kind] = sorted(tasks[f"memsweep_{kind}"].instances, key=lambda i: (i.doc_id, i.idx))
    return instances, files


@pytest.mark.parametrize("family", REQUEST_FAMILIES)
def test_requests_per_tokenizer_family(family, request_tasks, tmp_path, capsys):
    """The harness's HF backend (HFLM on a tiny model, the family's tokenizer folder through AutoTokenizer) builds its
    loglikelihood and rolling requests with its own code (tok_encode with the tokenizer's special tokens, _encode_pair,
    prefix_token_id); its scoring is replaced by a recorder. memsweep's requests for the same documents must be the
    same token ids, in the same order."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM

    instances, files = request_tasks
    folder = tmp_path / "model"
    folder.mkdir()
    for relative in REQUEST_FAMILIES[family]:
        shutil.copy(shared_file(f"tokenizers/{relative}"), folder / Path(relative).name)
    if family in WRITTEN_CONFIGS:
        (folder / "tokenizer_config.json").write_text(json.dumps(WRITTEN_CONFIGS[family]))
    vocab_size = len(AutoTokenizer.from_pretrained(folder))
    config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=8, max_position_embeddings=4096, eos_token_id=0, bos_token_id=0)
    config.save_pretrained(folder)  # memsweep reads the config only: --print-requests stops before the weights
    harness = HFLM(pretrained=GPTNeoXForCausalLM(config), tokenizer=str(folder), batch_size=1, device="cpu")
    recorded = []

    def record(requests, **_):
        recorded.extend((list(context), list(continuation)) for _, context, continuation in requests)
        return [(0.0, False)] * len(requests)
    harness._loglikelihood_tokens = record

    counts = []
    for kind in REQUEST_KINDS:
        recorded.clear()
        if kind == "rolling_loglikelihood":
            harness.loglikelihood_rolling(instances[kind], disable_tqdm=True)
        else:
            harness.loglikelihood(instances[kind], disable_tqdm=True)
        out = run_memsweep("eval", "--model", folder, "--task", f"{kind}:{files[kind]}", "--print-requests").stdout
        ours = [(r["context"], r["continuation"]) for r in map(json.loads, out.splitlines())]
        differ = [i for i, (a, b) in enumerate(zip(ours, recorded)) if a != b]
        assert len(ours) == len(recorded) and not differ, \
            f"{kind}: {len(differ)} of {len(recorded)} requests differ, first: {[(ours[i], recorded[i]) for i in differ[:2]]}"
        counts.append(f"{len(recorded)} {kind}")
    with capsys.disabled():
        print(f"\n{family}: the harness's token ids for every request ({', '.join(counts)})")


@pytest.mark.parametrize("kind", ["piqa", "arc_easy"])
def test_llama_with_the_llama3_tokenizer_same_numbers_as_the_harness(kind, tmp_path):
    """A random-init Llama (4 query heads on 2 KV heads, rope_type llama3) with the real Llama 3 tokenizer folder: the
    harness's HF backend (its BOS included, as it adds it for this tokenizer) and memsweep give each document the same
    loglikelihoods (within 1e-4) and the same acc and acc_norm, on the shared PIQA and ARC-Easy rows."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (tests/python/requirements.txt)")
    folder = [shared_file(f"tokenizers/llama-3/{name}") for name in ("tokenizer.json", "tokenizer_config.json")]
    model_dir = tmp_path / "model"
    make_llama(model_dir, vocab_size=128256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, intermediate_size=48, max_position_embeddings=MAX_LENGTH, bos_token_id=128000,
               eos_token_id=128001, rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                         low_freq_factor=1.0, high_freq_factor=4.0,
                                                         original_max_position_embeddings=64))
    for path in folder:
        shutil.copy(path, model_dir / path.name)
    yaml_dir, files = write_harness_tasks(tmp_path, [kind])

    import lm_eval
    from lm_eval.tasks import TaskManager

    output = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=[f"memsweep_{kind}"],
                                     task_manager=TaskManager(include_path=str(yaml_dir)), batch_size=16, device="cpu",
                                     log_samples=True)
    out = tmp_path / "ours.json"
    run_memsweep("eval", "--model", model_dir, "--task", f"{kind}:{files[kind]}", "--batch-size", 16, "--out", out)
    ours = json.loads(out.read_text())["results"][0]
    samples = sorted(output["samples"][f"memsweep_{kind}"], key=lambda s: s["doc_id"])
    assert len(ours["examples"]) == len(samples) == ROWS
    worst = worst_relative = 0.0
    for example, sample in zip(ours["examples"], samples):
        mine = request_facts(example["facts"], "loglikelihood")
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        assert len(mine) == len(theirs)
        worst = max(worst, max(abs(a - b) for a, b in zip(mine, theirs)))
        worst_relative = max(worst_relative, max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(mine, theirs)))
        for metric in ("acc", "acc_norm"):
            assert example["values"][metric] == sample[metric], f"document {example['index']}: {metric} differs"
    theirs_metrics = harness_metrics(output, kind)
    print(f"llama + Llama 3 tokenizer, {kind}: {len(samples)} documents, max |loglikelihood difference| {worst:.3g} "
          f"(relative {worst_relative:.3g}); acc {ours['metrics']['acc']:.4f} (harness {theirs_metrics['acc']:.4f})")
    # As test_same_numbers_as_the_harness: 1e-4, or one part in 1e6 for long float32 sums (128,256-way softmaxes here).
    assert worst <= 1e-4 or worst_relative <= 1e-6
    assert ours["metrics"]["acc"] == pytest.approx(theirs_metrics["acc"], abs=1e-12)
    assert ours["metrics"]["acc_norm"] == pytest.approx(theirs_metrics["acc_norm"], abs=1e-12)
