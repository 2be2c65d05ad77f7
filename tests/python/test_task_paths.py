"""One way to open a task: every task kind through `memsweep eval` and through `memsweep run` (one process and
`mpirun -np 3`) gives the same per-example results, bit for bit at the same thread count, on the demo model
(GPT-NeoX, tokenizer.json) and on a random GPT-Neo with 64 learned positions whose folder has only vocab.json +
merges.txt (the GPT-2 layout). The rows and texts are short enough for 64 positions only once padding takes none
and long contexts are cut from the left as lm-evaluation-harness cuts them.

Then what the README promises about batch size and threads (the determinism statement): at another batch size,
unit size and thread count, discrete outcomes are equal except at a recorded near-tie and every float agrees to
float32 rounding."""
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, make_gpt_neo, run_memsweep, store_examples

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "jobs" / "demo"
BENCHMARKS = ROOT / "tests" / "data" / "benchmarks"
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")
INTERVENTIONS = ["baseline", "short_circuit:1", "zero_attention:2", "short_circuit:0-1"]

PIQA = [{"goal": "To keep a canary warm", "sol1": "cover its cage at night.", "sol2": "open every window.", "label": 0},
        {"goal": "To cool hot soup", "sol1": "stir it and wait.", "sol2": "add more salt.", "label": 0},
        {"goal": "To dry wet shoes", "sol1": "put them in the rain.", "sol2": "stuff them with paper.", "label": 1}]
ARC_EASY = [{"id": "e1", "question": "Which of these is a mammal?", "choices": {"text": ["a wren", "a stag", "a toad"],
                                                                                 "label": ["A", "B", "C"]}, "answerKey": "B"},
            {"id": "e2", "question": "What melts ice?", "choices": {"text": ["heat", "cold", "dark", "wind"],
                                                                    "label": ["1", "2", "3", "4"]}, "answerKey": "1"}]

# Every task kind: (name, kind, path, options). Options keep the sets small; `limit` is a dataset option, so eval
# and run read the same examples.
DATASETS = [
    ("canaries", "memorization", DEMO / "canaries.jsonl", {"prefix": 16, "limit": 10}),
    ("divergence", "divergence", DEMO / "divergence.jsonl", {"limit": 6}),
    ("piqa", "piqa", "piqa.jsonl", {}),
    ("arc_easy", "arc_easy", "arc_easy.jsonl", {}),
    ("arc_challenge", "arc_challenge", BENCHMARKS / "arc_challenge.jsonl", {}),
    ("hellaswag", "hellaswag", BENCHMARKS / "hellaswag.jsonl", {}),
    ("winogrande", "winogrande", BENCHMARKS / "winogrande.jsonl", {}),
    ("sciq", "sciq", BENCHMARKS / "sciq.jsonl", {}),
    ("openbookqa", "openbookqa", BENCHMARKS / "openbookqa.jsonl", {}),
    ("boolq", "boolq", BENCHMARKS / "boolq.jsonl", {}),
    ("lambada", "lambada_openai", BENCHMARKS / "lambada.jsonl", {}),
    ("world_facts", "multiple_choice", DEMO / "world_facts.jsonl",
     {"context": "{{context}}", "choices": "choices", "label": "label", "limit": 8}),
    ("rolling", "rolling_loglikelihood", BENCHMARKS / "rolling.jsonl", {}),
]


def toml_value(value):
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_study(folder, name, batch, unit_size):
    lines = [f"[run]\nbatch_size = {batch}\nunit_size = {unit_size}\n", '[store]\ndetail = "full"\n',  # eval's detail too
             "[interventions]\nbaseline = false\nnames = " + json.dumps(INTERVENTIONS) + "\n",
             f'[[models]]\nname = "demo"\npath = "{DEMO}"\n', '[[models]]\nname = "neo"\npath = "neo"\n']
    for dataset, kind, path, options in DATASETS:
        lines.append(f'[[datasets]]\nname = "{dataset}"\nkind = "{kind}"\npath = "{path}"\noptions = {toml_value(options)}\n')
    study = folder / name
    study.write_text("\n".join(lines))
    return study


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths")
    tokenizer = json.loads((DEMO / "tokenizer.json").read_text())
    # GPT-Neo: 64 learned positions, a window shorter than the rows, the demo's vocabulary as vocab.json + merges.txt.
    make_gpt_neo(folder / "neo", seed=7, vocab_size=768, num_layers=3, attention_types=[[["global", "local"], 1], [["global"], 1]],
                 window_size=8, max_position_embeddings=64, eos_token_id=0, bos_token_id=0)
    (folder / "neo" / "vocab.json").write_text(json.dumps(tokenizer["model"]["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    (folder / "neo" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    assert not (folder / "neo" / "tokenizer.json").exists()
    (folder / "piqa.jsonl").write_text("".join(json.dumps(d) + "\n" for d in PIQA))
    (folder / "arc_easy.jsonl").write_text("".join(json.dumps(d) + "\n" for d in ARC_EASY))
    return folder


def stored_examples(store):
    """{(model, dataset, intervention, index): (values, facts, detail)} of a finished store."""
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM units WHERE status != 'done'").fetchone() == (0,)
    return {(*key.split("|")[:2], name, index): entry for (key, name, index), entry in store_examples(store).items()}


def evaluated_examples(folder, model, model_name, batch, threads="1"):
    """The same through `memsweep eval`, one call per dataset."""
    out = {}
    for dataset, kind, path, options in DATASETS:
        target = folder / f"eval-{model_name}-{dataset}-{batch}.json"
        args = ["eval", "--model", model, "--task", f"{kind}:{Path(folder, path)}", "--batch-size", batch, "--out", target]
        for key, value in options.items():
            args += ["--option", f"{key}={json.dumps(value)}"]
        for name in INTERVENTIONS:
            args += ["--intervention", name]
        result = subprocess.run([MEMSWEEP_BIN, *map(str, args)], capture_output=True, text=True, timeout=300,
                                env=dict(os.environ, OMP_NUM_THREADS=threads))
        assert result.returncode == 0, (model_name, dataset, result.stderr)
        for entry in json.loads(target.read_text())["results"]:
            for example in entry["examples"]:
                out[(model_name, dataset, entry["intervention"], example["index"])] = (example["values"], example["facts"],
                                                                                       example["detail"])
    return out


def assert_identical(a, b, what):
    assert a.keys() == b.keys(), what
    differing = [key for key in a if a[key] != b[key]]
    assert not differing, (what, differing[:3], [(a[k], b[k]) for k in differing[:1]])


def test_eval_and_run_give_the_same_examples_bit_for_bit(folder):
    study = write_study(folder, "study.toml", batch=4, unit_size=1000)  # one unit per dataset: eval's batches
    run_memsweep("run", study, "--db", folder / "one.sqlite")
    three = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study),
                            "--db", str(folder / "three.sqlite")], env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert three.returncode == 0, three.stderr
    one = stored_examples(folder / "one.sqlite")
    evaluated = {**evaluated_examples(folder, DEMO, "demo", 4), **evaluated_examples(folder, folder / "neo", "neo", 4)}
    kinds = {kind for _, kind, _, _ in DATASETS}
    assert {key[1] for key in one} == {name for name, _, _, _ in DATASETS} and len(kinds) == 13
    print(f"{len(one)} examples x interventions, {len(kinds)} task kinds, 2 models: eval = run = mpirun -np 3, bit for bit")
    assert_identical(evaluated, one, "eval vs run")
    assert_identical(one, stored_examples(folder / "three.sqlite"), "run vs mpirun -np 3")


def gap_of(facts):
    """The smallest recorded top-two gap where a discrete outcome was decided: over a memorization row's greedy
    choices, a LAMBADA continuation's, a multiple-choice document's best two loglikelihoods."""
    gaps = [facts[key] for key in ("min_top2_gap", "choice_gap") if key in facts]
    return min(gaps) if gaps else float("inf")


DISCRETE = ("exact_match", "token_accuracy", "match_length", "acc", "acc_norm")
EPSILON = 1e-4  # float32 logits: a decision whose top-two gap is below this may break either way (method.md)


def test_batch_size_unit_size_and_threads_change_floats_only_by_rounding(folder):
    """README § determinism: other batch sizes, unit sizes and thread counts give equal discrete outcomes (except
    where the recorded top-two gap is below 1e-4) and floats within 1e-5 relative (1e-6 absolute near zero; the
    divergence metrics 2e-5 absolute)."""
    study = write_study(folder, "other.toml", batch=3, unit_size=5)
    run_memsweep("run", study, "--db", folder / "other.sqlite")
    reference = {**evaluated_examples(folder, DEMO, "demo", 4), **evaluated_examples(folder, folder / "neo", "neo", 4)}
    for label, other in (("batch 3, units of 5", stored_examples(folder / "other.sqlite")),
                         ("eval batch 16, 2 threads", {**evaluated_examples(folder, DEMO, "demo", 16, threads="2"),
                                                       **evaluated_examples(folder, folder / "neo", "neo", 16, threads="2")})):
        assert other.keys() == reference.keys(), label
        largest, near_ties, changed = 0.0, 0, 0
        for key, (values, facts, _) in reference.items():
            other_values, other_facts, _ = other[key]
            tie = min(gap_of(facts), gap_of(other_facts)) < EPSILON
            for metric, value in values.items():
                if metric in DISCRETE:
                    if value != other_values[metric]:
                        assert tie, (label, key, metric, value, other_values[metric])
                        near_ties += 1
                    continue
                if not tie:
                    largest = max(largest, abs(value - other_values[metric]) / max(abs(value), 1.0))
                    # KL (of float32 log-probabilities) and relative change (||h - h'|| / ||h|| of hidden states each
                    # within 1e-5 relative) are differences: their rounding is absolute whatever their size, up to twice
                    # the rule's 1e-5 (CI runs saw 2.8e-6 on a KL of 0.24, 5.4e-6 on a relative change of 0.44).
                    divergence = metric.startswith(("kl.", "relative_change."))
                    tolerance = 2e-5 if divergence else 1e-6
                    assert other_values[metric] == pytest.approx(value, rel=1e-5, abs=tolerance), (label, key, metric)
            changed += values != other_values
        print(f"{label}: {changed} of {len(reference)} examples differ in a float, largest difference {largest:.2e} "
              f"(relative, absolute below 1), {near_ties} discrete outcomes flipped at recorded near-ties")
