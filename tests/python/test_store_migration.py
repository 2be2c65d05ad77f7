"""Stores of the previous release (schema 1, tests/data/stores/README.md) opened by today's memsweep: migrated to the
current schema, they report the numbers that release printed, an interrupted study resumes across the migration to
every unit exactly once with the results the old release computed, and the migrated store grows with --extend."""
import csv
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from memsweep_testing import run_memsweep, store_examples

STORES = Path(__file__).resolve().parents[1] / "data" / "stores"
STUDY = STORES / "v1_study.toml"


def metrics_section(status):
    """The numbers of `status --metrics`, without what this release adds to them (± standard errors, the lines of
    differences against the baseline, the legend): a table per model and dataset, its rows' words and numbers."""
    section = status[status.index("demo on "):]
    rows = []
    for line in section.splitlines():
        if line.startswith("  − baseline") or line.startswith("± :"):
            continue
        words = line.split()
        while "±" in words:
            at = words.index("±")
            del words[at:at + 2]
        if words:
            rows.append(words)
    return rows


def report_table(path, columns=None):
    """A report CSV's rows, limited to `columns` (the ones the previous release wrote) when given."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: row[k] for k in (columns or row)} for row in rows]


def test_a_finished_store_is_migrated_and_reports_the_same_numbers(tmp_path):
    store = tmp_path / "finished.sqlite"
    shutil.copy(STORES / "v1_finished.sqlite", store)
    before = store_examples(store)
    run_memsweep("report", store, "--out", tmp_path / "report-before", "--no-figures")
    result = run_memsweep("run", STUDY, "--db", store)
    for migration in ("0002_study_growth", "0003_dataset_roles", "0004_compact_examples"):
        assert f"applied migration {migration}" in result.stderr
    assert "60 example rows converted to columns" in result.stderr
    status = run_memsweep("status", store, "--metrics").stdout
    assert "store schema 4" in status
    # As the old release printed them (this one adds standard errors and differences against the baseline).
    assert metrics_section(status) == metrics_section((STORES / "v1_finished.metrics.txt").read_text())
    assert store_examples(store) == before  # every value and detail as the old release stored it
    run_memsweep("report", store, "--out", tmp_path / "report-after", "--no-figures")
    for table in ("metrics.csv", "interventions.csv", "divergence.csv"):  # every number the report printed before
        with open(tmp_path / "report-before" / table, newline="") as f:
            header = csv.DictReader(f).fieldnames
        old_columns = [name for name in header if not (name.endswith(("stderr", "_se", "significant")) or name in (
            "paired_n", "difference", "ci_low", "ci_high", "test", "p_value", "p_holm", "removed", "added"))]
        assert report_table(tmp_path / "report-after" / table, old_columns) == report_table(
            tmp_path / "report-before" / table, old_columns), table
    # The statistics, which need per-example values, come with the migration: before it the store had none.
    before_rows = {(r["dataset"], r["intervention"], r["metric"]): r for r in report_table(tmp_path / "report-before" / "metrics.csv")}
    after_rows = {(r["dataset"], r["intervention"], r["metric"]): r for r in report_table(tmp_path / "report-after" / "metrics.csv")}
    assert not any(r["stderr"] for r in before_rows.values())
    examples = [values["exact_match"] for (key, name, _), (values, _, _) in before.items()
                if name == "short_circuit:5" and "exact_match" in values and "canaries" in key]
    mean = sum(examples) / len(examples)
    expected = math.sqrt(sum((x - mean) ** 2 for x in examples) / (len(examples) - 1) / len(examples))
    assert float(after_rows[("canaries", "short_circuit:5", "exact_match")]["stderr"]) == pytest.approx(expected, rel=1e-12)
    assert after_rows[("canaries", "short_circuit:5", "exact_match")]["test"] == "mcnemar"
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT version, units_added FROM study_versions").fetchall() == [(1, 30)]
        assert db.execute("SELECT DISTINCT study_version FROM units").fetchall() == [(1,)]
        assert db.execute("SELECT COUNT(*) FROM units").fetchone() == (30,)  # nothing was planned again
    # The migrated store grows like any other: a block added computes that block only (10 shards, one unit each).
    grown = tmp_path / "grown.toml"
    grown.write_text(STUDY.read_text().replace('"short_circuit:5"]', '"short_circuit:5", "short_circuit:3"]')
                     .replace("../../../jobs/demo", str(STORES.parents[2] / "jobs" / "demo")))
    assert "adds 10 units" in run_memsweep("plan", grown, "--db", store).stdout
    run_memsweep("run", grown, "--db", store, "--extend")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT version, units_added FROM study_versions").fetchall() == [(1, 30), (2, 10)]
        assert db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone() == (40,)
    after = store_examples(store)
    assert all(after[key] == value for key, value in before.items())


def test_an_interrupted_study_resumes_across_the_migration(tmp_path):
    store = tmp_path / "interrupted.sqlite"
    shutil.copy(STORES / "v1_interrupted.sqlite", store)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status, COUNT(*) FROM units GROUP BY 1 ORDER BY 1").fetchall() == \
            [("done", 12), ("pending", 17), ("running", 1)]
    kept = store_examples(store)
    result = run_memsweep("run", STUDY, "--db", store)
    assert "1 units left running by an earlier job are pending again" in result.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status, COUNT(*) FROM units GROUP BY 1").fetchall() == [("done", 30)]
        assert db.execute("SELECT COUNT(*) FROM (SELECT unit_id, intervention_id, name FROM example_values "
                          "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)").fetchone() == (0,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    resumed = store_examples(store)
    assert all(resumed[key] == value for key, value in kept.items())
    # Every unit once, with what the old release computed for the whole study (the same batches, one thread); the units
    # run after the migration store the facts and no detail.
    finished = tmp_path / "finished.sqlite"
    shutil.copy(STORES / "v1_finished.sqlite", finished)
    old = store_examples(finished)
    assert resumed.keys() == old.keys() and all(resumed[key][0] == old[key][0] for key in old)
    assert metrics_section(run_memsweep("status", store, "--metrics").stdout) == \
        metrics_section((STORES / "v1_finished.metrics.txt").read_text())
