"""Stores of the previous release (schema 1, tests/data/stores/README.md) opened by today's memsweep: migrated to the
current schema, they report the numbers that release printed, an interrupted study resumes across the migration to
every unit exactly once with the results the old release computed, and the migrated store grows with --extend."""
import shutil
import sqlite3
from pathlib import Path

from memsweep_testing import run_memsweep, store_examples

STORES = Path(__file__).resolve().parents[1] / "data" / "stores"
STUDY = STORES / "v1_study.toml"


def metrics_section(status):
    return status[status.index("demo on "):]


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
    assert metrics_section(status) == (STORES / "v1_finished.metrics.txt").read_text()  # as the old release printed them
    assert store_examples(store) == before  # every value and detail as the old release stored it
    run_memsweep("report", store, "--out", tmp_path / "report-after", "--no-figures")
    for table in ("metrics.csv", "interventions.csv", "divergence.csv"):  # every number the report prints
        assert (tmp_path / "report-after" / table).read_text() == (tmp_path / "report-before" / table).read_text(), table
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
    assert metrics_section(run_memsweep("status", store, "--metrics").stdout) == (STORES / "v1_finished.metrics.txt").read_text()
