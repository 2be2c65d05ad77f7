"""Uncertainty (worker/tasks/statistics.h) against numpy/scipy: every standard error, paired difference, interval,
p-value and Holm–Bonferroni decision that `memsweep report` writes to metrics.csv equals what numpy and scipy compute
from the store's own per-example values (read as schemas/store.md says), within 1e-9 relative + 1e-12 absolute; and
LAMBADA's perplexity standard error equals lm-evaluation-harness's bootstrap on the same loglikelihoods. The same
study is run three ways: units of 1 example under `mpirun -np 3`, units of 7 grown by `--extend` (the baseline in
other units than the blocks added later) with two interventions per unit, and whole-set units in one process — the
statistics may not depend on any of it. The demo's controls (EM all 0) and world_facts (the baseline's acc all 1) give
metrics with zero variance."""
import csv
import json
import math
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, run_memsweep, store_examples

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is not installed (tests/python/requirements.txt)")
np = pytest.importorskip("numpy")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "jobs" / "demo"
LAMBADA = ROOT / "tests" / "data" / "benchmarks" / "lambada.jsonl"
INTERVENTIONS = ["baseline"] + [f"short_circuit:{b}" for b in range(6)] + ["short_circuit:4-5"]
BINARY = ("exact_match", "acc", "acc_norm")
MEANS = ("token_accuracy", "completion_entropy", "match_length")


def study_text(unit_size, per_unit=0, interventions='single_blocks = true\nblocks = ["4-5"]'):
    return f"""
[study]
name = "statistics"

[[models]]
name = "demo"
path = "{DEMO}"
dtype = "float32"

[[datasets]]
name = "canaries"
kind = "memorization"
path = "{DEMO}/canaries.jsonl"
options = {{ prefix = 16 }}

[[datasets]]
name = "controls"
kind = "memorization"
role = "control"
path = "{DEMO}/controls.jsonl"
options = {{ prefix = 16 }}

[[datasets]]
name = "world_facts"
kind = "multiple_choice"
path = "{DEMO}/world_facts.jsonl"
options = {{ context = "{{{{context}}}}", choices = "choices", label = "label", tag = "language" }}

[[datasets]]
name = "arithmetic"
kind = "multiple_choice"
path = "{DEMO}/arithmetic.jsonl"
options = {{ context = "{{{{context}}}}", choices = "choices", label = "label", tag = "reasoning" }}

[[datasets]]
name = "lambada"
kind = "lambada_openai"
path = "{LAMBADA}"

[interventions]
baseline = true
{interventions}

[run]
unit_size = {unit_size}
interventions_per_unit = {per_unit}
"""


def stored_values(store):
    """{(dataset, intervention): {example index: values}} of a store's done units."""
    with sqlite3.connect(store) as db:
        dataset_of = dict(db.execute("SELECT u.key, d.name FROM units u JOIN datasets d ON d.id = u.dataset_id"))
    out = {}
    for (key, intervention, index), (values, _, _) in store_examples(store).items():
        out.setdefault((dataset_of[key], intervention), {})[index] = values
    return out


def holm(p_values):
    """Holm–Bonferroni adjusted p-values (statsmodels' 'holm'), written out."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def harness_perplexity_stderr(loglikelihoods):
    os.environ["DISABLE_MULTIPROC"] = "1"  # the same chunks and seeds as the pool, in this process
    from lm_eval.api.metrics import bootstrap_stderr, perplexity

    return bootstrap_stderr(perplexity, loglikelihoods, iters=100000)


def reference_statistics(store):
    """{(dataset, intervention, metric): {column of metrics.csv: value}} computed with numpy/scipy."""
    values = stored_values(store)
    out = {}
    for (dataset, intervention), examples in values.items():
        indices = sorted(examples)
        metrics = {name for index in indices for name in examples[index]}
        for metric in metrics:
            if metric not in BINARY + MEANS:
                continue
            x = np.array([examples[i][metric] for i in indices], dtype=np.float64)
            row = out.setdefault((dataset, intervention, metric), {})
            row["stderr"] = np.std(x, ddof=1) / math.sqrt(len(x))
            if intervention == "baseline":
                continue
            base = np.array([values[(dataset, "baseline")][i][metric] for i in indices], dtype=np.float64)
            d = x - base
            se = np.std(d, ddof=1) / math.sqrt(len(d))
            q = scipy_stats.t.ppf(0.975, len(d) - 1)
            row.update(paired_n=len(d), difference=d.mean(), difference_stderr=se, ci_low=d.mean() - q * se,
                       ci_high=d.mean() + q * se)
            if metric in BINARY:
                removed, added = int(((base == 1) & (x == 0)).sum()), int(((base == 0) & (x == 1)).sum())
                row.update(test="mcnemar", removed=removed, added=added,
                           p_value=scipy_stats.binomtest(min(removed, added), removed + added, 0.5).pvalue if removed + added else 1.0)
            else:
                # Every difference 0: scipy says NaN (0 / 0); memsweep says 1 (no evidence of a change).
                p = scipy_stats.ttest_rel(x, base).pvalue
                row.update(test="paired_t", p_value=1.0 if not d.any() else p)
        if dataset == "lambada":
            loglikelihoods = [examples[i]["loglikelihood"] for i in indices]
            out[(dataset, intervention, "perplexity")] = {"stderr": harness_perplexity_stderr(loglikelihoods)}
    for dataset, metric in {(k[0], k[2]) for k in out}:
        tests = [(k, r) for k, r in out.items() if k[0] == dataset and k[2] == metric and "p_value" in r]
        for (_, row), adjusted in zip(tests, holm([r["p_value"] for _, r in tests])):
            row.update(p_holm=adjusted, significant=int(adjusted <= 0.05))
    return out


def report_statistics(store, out):
    run_memsweep("report", store, "--out", out, "--no-figures")
    with open(out / "metrics.csv", newline="") as f:
        return {(r["dataset"], r["intervention"], r["metric"]): r for r in csv.DictReader(f)}


def close(ours, theirs):
    return abs(ours - theirs) <= 1e-9 * abs(theirs) + 1e-12


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("statistics")
    (folder / "ones.toml").write_text(study_text(1))
    mpirun_study(folder / "ones.toml", folder / "ones.sqlite")
    (folder / "sevens.toml").write_text(study_text(7, 2, 'names = ["short_circuit:0", "short_circuit:1"]'))
    run_memsweep("run", folder / "sevens.toml", "--db", folder / "sevens.sqlite")
    (folder / "sevens.toml").write_text(study_text(7, 2))
    run_memsweep("run", folder / "sevens.toml", "--db", folder / "sevens.sqlite", "--extend")
    (folder / "whole.toml").write_text(study_text(100000))
    run_memsweep("run", folder / "whole.toml", "--db", folder / "whole.sqlite")
    return folder


def mpirun_study(study, store):
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", study, "--db", store],
                   env=env, check=True, capture_output=True, timeout=600)


def test_every_statistic_equals_numpy_and_scipy(stores):
    reference = reference_statistics(stores / "whole.sqlite")
    with sqlite3.connect(stores / "ones.sqlite") as db:
        assert db.execute("SELECT COUNT(*), MAX(count) FROM units").fetchone()[1] == 1
    compared, largest, zero_variance = 0, 0.0, 0
    for name in ("ones", "sevens", "whole"):
        # The same per-example values in each store (one thread, the same batches within a unit's examples differ only
        # where units cut batches differently: float32 rounding), so each store is compared with its own reference.
        expected = reference if name == "whole" else reference_statistics(stores / f"{name}.sqlite")
        ours = report_statistics(stores / f"{name}.sqlite", stores / f"report-{name}")
        for key, columns in expected.items():
            row = ours[key]
            for column, value in columns.items():
                if column in ("test",):
                    assert row[column] == value, (name, key, column)
                    continue
                if isinstance(value, float) and math.isnan(value):
                    assert row[column] == "", (name, key, column, row[column])
                    continue
                mine = float(row[column])
                assert close(mine, float(value)), (name, key, column, mine, value)
                largest = max(largest, abs(mine - float(value)) / max(abs(float(value)), 1e-300) if value else abs(mine))
                compared += 1
            zero_variance += columns.get("stderr") == 0
        # Every number with a statistic has its columns: none is missing from what the reference computes.
        assert {k for k, r in ours.items() if r["stderr"]} == {k for k, r in expected.items() if "stderr" in r}, name
    print(f"{compared} statistics of 3 stores equal numpy/scipy (largest relative difference {largest:.2e}); "
          f"{zero_variance} with zero variance")
    assert zero_variance > 0
    # Significance decisions exist in both directions on the demo.
    assert {reference[k].get("significant") for k in reference} >= {0, 1}


def test_eval_json_has_the_same_statistics(stores):
    """`memsweep eval` (every intervention on the whole set, in one process) reports what the store's numbers say."""
    out = stores / "eval.json"
    run_memsweep("eval", "--model", DEMO, "--task", f"memorization:{DEMO}/canaries.jsonl", "--option", "prefix=16",
                 *[arg for name in INTERVENTIONS for arg in ("--intervention", name)], "--out", out)
    results = {r["intervention"]: r for r in json.loads(out.read_text())["results"]}
    reference = reference_statistics(stores / "whole.sqlite")
    for intervention, result in results.items():
        for metric in ("exact_match",) + MEANS:
            expected = reference[("canaries", intervention, metric)]
            assert close(result["metrics"][f"{metric}_stderr"], expected["stderr"]), (intervention, metric)
            if intervention == "baseline":
                assert "paired" not in result
                continue
            paired = result["paired"][metric]
            for ours, theirs in (("difference", "difference"), ("stderr", "difference_stderr"), ("ci_low", "ci_low"),
                                 ("ci_high", "ci_high"), ("p_value", "p_value"), ("p_holm", "p_holm")):
                assert close(paired[ours], expected[theirs]), (intervention, metric, ours)
