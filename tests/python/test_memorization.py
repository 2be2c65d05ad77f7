"""The memorization task (memsweep eval --task memorization:...) on random-init models. Suffixes are the model's
own greedy continuations with mismatches planted at known positions; the output head has exact ties (two
identical rows) and a favoured EOS row. Checked:
- the shortcut (one teacher-forced pass, generation only from the first mismatch, from that pass's cache)
  equals plain greedy generation of the whole suffix (memsweep generate): continuation, EM, TA, match length;
- EM/TA against transformers' generate (the paper's call) and CE against an independent teacher-forced
  transformers computation; a discrete disagreement passes only at a recorded top-two gap below EPSILON.
With and without short-circuit, EOS mask on and off, GPT-NeoX, GPT-Neo and Mistral (grouped-query, windowed)."""
import json

import pytest
import torch

import functools

from memsweep_testing import (load_reference, make_gpt_neo, make_gpt_neox, make_llama, reference_intervention, run_memsweep,
                              write_tokens)

PREFIX, SUFFIX, EPSILON = 8, 10, 1e-4
EOS, TIED_LOW, TIED_HIGH = 0, 3, 7
PLANTED = [None, 0, 3, SUFFIX - 2, SUFFIX - 1, None, 5, None]  # where a row's suffix is made wrong
INTERVENTIONS = {"baseline": [], "sc_1": ["--short-circuit", "1"], "sc_2_zero_0": ["--short-circuit", "2", "--zero-attention", "0"]}


# Mistral: 4 query heads on 2 KV heads, a window (6) shorter than the rows (18 and 20 tokens).
MAKERS = {"gpt_neox": make_gpt_neox, "gpt_neo": make_gpt_neo,
          "mistral_gqa2_window6": functools.partial(make_llama, family="mistral", sliding_window=6)}


@pytest.fixture(scope="module", params=list(MAKERS))
def checkpoint(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    model = MAKERS[request.param](directory, seed=21)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[TIED_LOW] *= 1.6
        head[TIED_HIGH] = head[TIED_LOW]
        head[EOS] = head[TIED_LOW] * 1.05
    model.save_pretrained(directory)
    return directory, load_reference(directory)


def blocks(flags, name):
    return tuple(int(b) for b in flags[flags.index(name) + 1].split(",")) if name in flags else ()


def make_dataset(directory, flags, mask_eos, tmp_path):
    """Prefixes, suffixes = our greedy continuation under the same intervention, mismatches planted."""
    generator = torch.Generator().manual_seed(4)
    prefixes = torch.randint(1, 97, (len(PLANTED), PREFIX), generator=generator).tolist()
    args = ["generate", "--model", directory, "--tokens", write_tokens(tmp_path / "prefixes.json", prefixes),
            "--new-tokens", SUFFIX, *flags] + (["--no-eos"] if mask_eos else [])
    continuations = json.loads(run_memsweep(*args).stdout)
    rows = []
    for prefix, suffix, planted in zip(prefixes, continuations, PLANTED):
        suffix = list(suffix)
        if planted is not None:
            suffix[planted] = (suffix[planted] % 96) + 1 if suffix[planted] != 96 else 1  # any other non-EOS id
        rows.append({"tokens": prefix + suffix})
    path = tmp_path / "memorized.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, prefixes, [r["tokens"][PREFIX:] for r in rows]


@pytest.mark.parametrize("intervention", list(INTERVENTIONS))
@pytest.mark.parametrize("mask_eos", [True, False], ids=["eos_masked", "eos_allowed"])
def test_memorization_metrics(checkpoint, intervention, mask_eos, tmp_path):
    directory, model = checkpoint
    flags = INTERVENTIONS[intervention]
    data, prefixes, suffixes = make_dataset(directory, flags, mask_eos, tmp_path)
    out = tmp_path / "result.json"
    summary = json.loads(run_memsweep("eval", "--model", directory, "--task", f"memorization:{data}", "--option",
                                      f"prefix={PREFIX}", "--option", f"mask_eos={'true' if mask_eos else 'false'}",
                                      "--batch-size", 3, "--out", out, *flags).stdout)
    examples = json.loads(out.read_text())["results"][0]["examples"]
    assert len(examples) == len(PLANTED)

    # 1. The shortcut against plain greedy generation of the whole suffix.
    plain = json.loads(run_memsweep("generate", "--model", directory, "--tokens",
                                    write_tokens(tmp_path / "p.json", prefixes), "--new-tokens", SUFFIX, "--gaps", *flags,
                                    *(["--no-eos"] if mask_eos else [])).stdout)
    # 2. transformers: generate (the paper's call) and a teacher-forced pass for CE.
    short, zero = blocks(flags, "--short-circuit"), blocks(flags, "--zero-attention")
    banned = [EOS] if mask_eos else []
    worst_ce, disagreements = 0.0, 0
    for example, prefix, suffix, planted, reference in zip(examples, prefixes, suffixes, PLANTED, plain):
        values, ours = example["values"], example["detail"]["continuation"]
        gaps = example["detail"]["top2_gap"]
        for step, (a, b) in enumerate(zip(ours, reference["tokens"])):
            if a != b:
                print(f"shortcut vs plain generation differ at step {step}, gaps {gaps[step]:.3g} / {reference['top2_gap'][step]:.3g}")
                assert min(gaps[step], reference["top2_gap"][step]) < EPSILON
                disagreements += 1
                break
        else:
            assert ours == reference["tokens"]
        match = next((j for j, (a, b) in enumerate(zip(ours, suffix)) if a != b), SUFFIX)
        assert values["match_length"] == match
        assert values["exact_match"] == (1.0 if ours == suffix else 0.0)
        assert values["token_accuracy"] == pytest.approx(sum(a == b for a, b in zip(ours, suffix)) / SUFFIX, abs=1e-12)
        if planted is not None:
            assert values["exact_match"] == 0.0 and values["match_length"] <= planted

        with reference_intervention(model, short, zero), torch.no_grad():
            kwargs = dict(min_new_tokens=SUFFIX) if mask_eos else {}
            theirs = model.generate(torch.tensor([prefix]), attention_mask=torch.ones(1, PREFIX, dtype=torch.long),
                                    do_sample=False, max_new_tokens=SUFFIX, pad_token_id=EOS, **kwargs)[0, PREFIX:].tolist()
            logits = model(torch.tensor([prefix + suffix])).logits[0, PREFIX - 1:PREFIX + SUFFIX - 1].float()
        logits[:, banned] = float("-inf")
        log_p = torch.log_softmax(logits, -1)
        entropy = -(log_p.exp() * torch.nan_to_num(log_p, neginf=0.0)).sum().item()
        worst_ce = max(worst_ce, abs(entropy - values["completion_entropy"]) / abs(entropy))
        compared = theirs if mask_eos else theirs[: (theirs.index(EOS) + 1) if EOS in theirs else SUFFIX]
        first_difference = next((j for j, (a, b) in enumerate(zip(ours, compared)) if a != b), None)
        if first_difference is not None:
            print(f"transformers differs at step {first_difference}: our gap {gaps[first_difference]:.3g}")
            assert gaps[first_difference] < EPSILON
            disagreements += 1
    print(f"{directory.name} {intervention} mask_eos={mask_eos}: EM {summary['results'][0]['metrics']['exact_match']:.3f} "
          f"TA {summary['results'][0]['metrics']['token_accuracy']:.3f}; CE max rel diff vs transformers {worst_ce:.2g}; "
          f"{disagreements} near-tie disagreements")
    assert worst_ce <= 1e-5
    assert summary["results"][0]["metrics"]["examples"] == len(PLANTED)
    unplanted = [e["values"]["exact_match"] for e, p in zip(examples, PLANTED) if p is None]
    assert all(em == 1.0 for em in unplanted)  # the model's own continuation is memorized by construction


@pytest.mark.parametrize("line, words", [
    ("not json", ["line 2", "not valid JSON"]),
    ('{"tokenz": [1, 2]}', ["line 2", "no \\\"tokens\\\" nor \\\"text\\\""]),
    ('{"tokens": [1, 2, 500]}', ["line 2", "token id 500 is outside"]),
    ('{"tokens": [1, 2, 3]}', ["line 2", "3 tokens, fewer than prefix + suffix"]),
])
def test_bad_rows_are_errors_or_counted_skips(checkpoint, line, words, tmp_path):
    directory, _ = checkpoint
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"tokens": list(range(1, 21))}) + "\n" + line + "\n")
    args = ["eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8"]
    failed = run_memsweep(*args, check=False)
    assert failed.returncode == 1
    for word in words:
        assert word.replace("\\", "") in failed.stderr, failed.stderr
    summary = json.loads(run_memsweep(*args, "--skip-bad").stdout)
    assert summary["results"][0]["metrics"]["examples"] == 1


def test_npy_rows_and_results_do_not_depend_on_batch_size(checkpoint, tmp_path):
    import numpy as np

    directory, _ = checkpoint
    rows = torch.randint(1, 97, (7, 20), generator=torch.Generator().manual_seed(9)).numpy().astype(np.uint16)
    np.save(tmp_path / "rows.npy", rows)
    results = []
    for batch in (1, 4, 7):
        out = tmp_path / f"r{batch}.json"
        run_memsweep("eval", "--model", directory, "--task", f"memorization:{tmp_path / 'rows.npy'}", "--option", "prefix=8",
                     "--batch-size", batch, "--out", out)
        results.append(json.loads(out.read_text())["results"][0])
    for other in results[1:]:
        for a, b in zip(results[0]["examples"], other["examples"]):
            assert a["detail"]["continuation"] == b["detail"]["continuation"]
            assert a["values"]["completion_entropy"] == pytest.approx(b["values"]["completion_entropy"], rel=1e-5)


def test_rows_of_different_lengths_score_as_alone(checkpoint, tmp_path):
    """Without a `suffix` option a row's suffix is the rest of the row, so a batch mixes suffix lengths (left
    padding, per-row positions of the needed logits): every row scores exactly as it does in a batch of its own."""
    directory, _ = checkpoint
    generator = torch.Generator().manual_seed(15)
    rows = [torch.randint(1, 97, (8 + n,), generator=generator).tolist() for n in (10, 3, 7, 1, 12, 5)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    results = []
    for batch in (1, 6):
        out = tmp_path / f"r{batch}.json"
        run_memsweep("eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8",
                     "--batch-size", batch, "--out", out, "--sweep")
        results.append(json.loads(out.read_text())["results"])
    for alone, mixed in zip(*results):
        for a, b in zip(alone["examples"], mixed["examples"]):
            assert len(a["detail"]["continuation"]) == len(rows[a["index"]]) - 8
            assert a["detail"]["continuation"] == b["detail"]["continuation"]
            assert a["values"]["match_length"] == b["values"]["match_length"]
            assert a["values"]["completion_entropy"] == pytest.approx(b["values"]["completion_entropy"], rel=1e-5)


def test_text_rows_and_tokenizer_declarations(tmp_path):
    """{"text": ...} rows go through the model's own tokenizer (the real GPT-NeoX-20B one) and score exactly as
    the same rows given as ids; a set declared with another tokenizer is refused before any work."""
    import shutil

    from tokenizers import Tokenizer

    from memsweep_testing import shared_file

    neox_tokenizer = shared_file("tokenizers/gpt-neox-20b/tokenizer.json")
    gpt2_tokenizer = shared_file("tokenizers/gpt2/tokenizer.json")
    directory = tmp_path / "model"
    make_gpt_neox(directory, seed=2, vocab_size=50304, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                  num_hidden_layers=2)
    shutil.copy(neox_tokenizer, directory / "tokenizer.json")
    texts = ["The quick brown fox jumps over the lazy dog again and again.", "Résumé   of 2024: émigré café, naïve — ok!"]
    reference = Tokenizer.from_file(str(neox_tokenizer))
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps({"tokens": reference.encode(t).ids}) + "\n" for t in texts))
    results = []
    for name in ("text", "ids"):
        out = tmp_path / f"{name}.json"
        run_memsweep("eval", "--model", directory, "--task", f"memorization:{tmp_path / (name + '.jsonl')}",
                     "--option", "prefix=4", "--out", out, "--dataset-tokenizer", neox_tokenizer)
        results.append(json.loads(out.read_text())["results"][0]["examples"])
    assert results[0] == results[1]

    refused = run_memsweep("eval", "--model", directory, "--task", f"memorization:{tmp_path / 'ids.jsonl'}",
                           "--option", "prefix=4", "--dataset-tokenizer", gpt2_tokenizer, check=False)
    assert refused.returncode == 1
    assert "was made with tokenizer" in refused.stderr and "silently wrong" in refused.stderr


def same_examples(ours, theirs):
    """Two runs' examples under the method's equality rule: continuations (hence EM, TA, match length) equal unless
    a recorded top-two gap at the first difference is below EPSILON; completion entropy within 1e-5 relative; the
    gaps themselves within EPSILON (differences of logits, they carry the logits' rounding: the rule trusts two
    computations to agree that closely). Returns the largest CE and gap differences."""
    worst_ce = worst_gap = 0.0
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a["index"] == b["index"] and a["detail"]["source"] == b["detail"]["source"]
        ca, cb = a["detail"]["continuation"], b["detail"]["continuation"]
        first_difference = next((j for j, (x, y) in enumerate(zip(ca, cb)) if x != y), None)
        if first_difference is not None:
            assert min(a["detail"]["top2_gap"][first_difference], b["detail"]["top2_gap"][first_difference]) < EPSILON
            continue
        for key in ("exact_match", "token_accuracy", "match_length"):
            assert a["values"][key] == b["values"][key]
        ce_a, ce_b = a["values"]["completion_entropy"], b["values"]["completion_entropy"]
        worst_ce = max(worst_ce, abs(ce_a - ce_b) / abs(ce_b))
        worst_gap = max(worst_gap, max(abs(x - y) for x, y in zip(a["detail"]["top2_gap"], b["detail"]["top2_gap"])))
    assert worst_ce <= 1e-5 and worst_gap < EPSILON
    return worst_ce, worst_gap


def test_sweep_reuses_lower_layers_without_changing_results(checkpoint, tmp_path):
    """A sweep (baseline + every block short-circuited, plus a zero-attention and a two-block case) computes the
    layers below each intervention's first block once per batch, and decodes the generations of several
    interventions as one batch, each row under its own intervention's modes. Results must be identical to
    computing every layer for every intervention, and the same as running each intervention alone (where every
    row's generation is decoded under block modes: equal up to float rounding of differently shaped products)."""
    directory, model = checkpoint
    rows = torch.randint(1, 97, (6, 20), generator=torch.Generator().manual_seed(12)).tolist()
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    base = ["eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8", "--batch-size", 4,
            "--sweep", "--intervention", "zero_attention:2", "--intervention", "short_circuit:1,3"]
    outputs = {}
    for name, extra in (("reuse", []), ("no_reuse", ["--no-reuse"])):
        run_memsweep(*base, *extra, "--out", tmp_path / f"{name}.json")
        outputs[name] = json.loads((tmp_path / f"{name}.json").read_text())["results"]
    names = [r["intervention"] for r in outputs["reuse"]]
    layers = model.config.num_hidden_layers
    assert names == ["zero_attention:2", "short_circuit:1,3", "baseline"] + [f"short_circuit:{b}" for b in range(layers)]
    assert outputs["reuse"] == outputs["no_reuse"]
    worst_ce = worst_gap = 0.0
    generated = 0
    for swept in outputs["reuse"]:
        run_memsweep("eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8", "--batch-size", 4,
                     "--intervention", swept["intervention"], "--out", tmp_path / "alone.json")
        alone = json.loads((tmp_path / "alone.json").read_text())["results"][0]["examples"]
        ce, gap = same_examples(swept["examples"], alone)
        worst_ce, worst_gap = max(worst_ce, ce), max(worst_gap, gap)
        generated += sum(e["values"]["match_length"] + 1 < len(e["detail"]["continuation"]) for e in alone)
    assert generated >= len(rows) * layers  # the merged decoding ran for most rows of most interventions
    # A layer no row runs normally but some short-circuit and others zero (their caches hold nothing there); and
    # interventions that skip every layer's attention (no cache at all to merge by).
    for mixed in (["zero_attention:1", "short_circuit:1", "short_circuit:0-3", "zero_attention:0-3"],
                  ["short_circuit:0-3", "zero_attention:0-3"]):
        run_memsweep("eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8", "--batch-size", 4,
                     *[a for name in mixed for a in ("--intervention", name)], "--out", tmp_path / "mixed.json")
        for merged in json.loads((tmp_path / "mixed.json").read_text())["results"]:
            run_memsweep("eval", "--model", directory, "--task", f"memorization:{data}", "--option", "prefix=8", "--batch-size", 4,
                         "--intervention", merged["intervention"], "--out", tmp_path / "alone.json")
            same_examples(merged["examples"], json.loads((tmp_path / "alone.json").read_text())["results"][0]["examples"])
    ems = {r["intervention"]: r["metrics"]["exact_match"] for r in outputs["reuse"]}
    print(f"{directory.name}: sweep of {len(names)} interventions, reuse == no reuse; each alone: largest CE difference "
          f"{worst_ce:.2g} (relative), top-two gap {worst_gap:.2g}; {generated} rows generated; EM {ems}")
