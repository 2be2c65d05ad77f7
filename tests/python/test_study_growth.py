"""A study grows with `memsweep run --extend` without redoing work or counting anything twice: on a finished study of
the demo model, (a) a block added, (b) a dataset added, (c) a second model added, (d) unit_size and
interventions_per_unit changed. After each, the units the extension run executed are exactly the new ones (counted
from the store's attempts), every result recorded before is byte-identical, each dataset's example count is its rows,
and `plan` said beforehand what the extension would add. The same under `mpirun -np 3` and after a kill -9 in the
middle of an extension run. Removing something is refused with what it would orphan."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, run_memsweep, status_metrics, store_examples

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "jobs" / "demo"
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")
ROWS = {"canaries": 12, "facts": 8, "divergence": 6}

MODEL = '[[models]]\nname = "{name}"\npath = "{path}"\n'
DATASETS = {
    "canaries": '[[datasets]]\nname = "canaries"\nkind = "memorization"\npath = "{demo}/canaries.jsonl"\n'
                'options = {{ prefix = 16, limit = 12 }}\n',
    "facts": '[[datasets]]\nname = "facts"\nkind = "multiple_choice"\npath = "{demo}/world_facts.jsonl"\n'
             'options = {{ context = "{{{{context}}}}", choices = "choices", label = "label", limit = 8 }}\n',
    "divergence": '[[datasets]]\nname = "divergence"\nkind = "divergence"\npath = "{demo}/divergence.jsonl"\n'
                  'options = {{ limit = 6 }}\n',
}


def study_text(names, datasets=("canaries", "facts"), models=("demo",), unit_size=5, per_unit=0):
    text = f"[run]\nbatch_size = 4\nunit_size = {unit_size}\ninterventions_per_unit = {per_unit}\n"
    text += "[interventions]\nbaseline = false\nnames = " + json.dumps(names) + "\n"
    for model in models:
        text += MODEL.format(name=model, path=DEMO if model == "demo" else f"{model}")
    for dataset in datasets:
        text += DATASETS[dataset].format(demo=DEMO)
    return text


def cells(store):
    """Per (model, dataset, intervention): the example indices stored, with repeats kept."""
    out = {}
    for (key, name, index) in store_examples(store):
        model, dataset = key.split("|")[:2]
        out.setdefault((model, dataset, name), []).append(index)
    return out


def units_in_latest_run(store):
    with sqlite3.connect(store) as db:
        run, = db.execute("SELECT MAX(id) FROM runs").fetchone()
        return db.execute("SELECT COUNT(DISTINCT unit_id) FROM attempts WHERE run_id = ? AND outcome = 'done'", (run,)).fetchone()[0]


def unit_count(store):
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*) FROM units").fetchone()[0]


def check_exactly_once(store, expected_cells):
    """Every expected (model, dataset, intervention) holds each of its dataset's rows exactly once."""
    got = cells(store)
    assert set(got) == set(expected_cells)
    for cell, indices in got.items():
        assert sorted(indices) == list(range(ROWS[cell[1]])), cell
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM units WHERE status != 'done'").fetchone() == (0,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def status_examples(store):
    """`status --metrics`: the examples column of every (model, dataset, intervention) row."""
    return {key: metrics["examples"][0] for key, metrics in status_metrics(store).items()}


def aggregates(store):
    """{(unit key, intervention): totals_json} as stored: what every metric of status and report is summed from."""
    with sqlite3.connect(store) as db:
        return {(key, name): totals for key, name, totals in db.execute(
            "SELECT u.key, i.name, a.totals_json FROM aggregates a JOIN units u ON u.id = a.unit_id "
            "JOIN interventions i ON i.id = a.intervention_id")}


def extend(folder, store, text, mpi=False):
    """Plans, then runs the extension; returns (plan's output, units the run executed)."""
    study = folder / "study.toml"
    study.write_text(text)
    plan = run_memsweep("plan", study, "--db", store).stdout
    before, totals_before = store_examples(store), aggregates(store)
    if mpi:
        job = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study), "--db",
                              str(store), "--extend"], env=MPI_ENV, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stderr
    else:
        run_memsweep("run", study, "--db", store, "--extend")
    after, totals_after = store_examples(store), aggregates(store)
    assert all(after[key] == value for key, value in before.items())  # every earlier result byte-identical
    assert all(totals_after[key] == value for key, value in totals_before.items())
    return plan, units_in_latest_run(store)


def names_with(*blocks):
    return ["baseline"] + [f"short_circuit:{b}" for b in blocks]


@pytest.mark.parametrize("mpi", [False, True], ids=["one process", "mpirun -np 3"])
def test_extensions_compute_only_what_is_new(tmp_path, mpi):
    store = tmp_path / "grow.sqlite"
    (tmp_path / "study.toml").write_text(study_text(names_with(0, 5)))
    run_memsweep("run", tmp_path / "study.toml", "--db", store)
    grid = {("demo", d, n) for d in ("canaries", "facts") for n in names_with(0, 5)}
    check_exactly_once(store, grid)

    # (a) a block: one unit per shard, under the new block alone (canaries 12 rows / 5 -> 3 shards, facts 8 -> 2).
    plan, executed = extend(tmp_path, store, study_text(names_with(0, 5, 3)), mpi)
    assert "`memsweep run --extend` adds 5 units" in plan and "short_circuit:3" in plan
    assert executed == 5
    grid |= {("demo", d, "short_circuit:3") for d in ("canaries", "facts")}
    check_exactly_once(store, grid)

    # (b) a dataset: the divergence set under every intervention, one shard of 6 rows... in units of 5.
    plan, executed = extend(tmp_path, store, study_text(names_with(0, 5, 3), datasets=("canaries", "facts", "divergence")), mpi)
    assert "adds 2 units" in plan and executed == 2
    grid |= {("demo", "divergence", n) for n in names_with(0, 5, 3)}
    check_exactly_once(store, grid)

    # (c) a second model: a copy of the demo's folder, every dataset under every intervention.
    shutil.copytree(DEMO, tmp_path / "demo2")
    plan, executed = extend(tmp_path, store, study_text(names_with(0, 5, 3), datasets=("canaries", "facts", "divergence"),
                                                       models=("demo", "demo2")), mpi)
    assert "adds 7 units" in plan and executed == 7
    grid |= {("demo2", d, n) for d in ROWS for n in names_with(0, 5, 3)}
    check_exactly_once(store, grid)

    # (d) unit size and interventions per unit shape only what is planned after they change: nothing is recomputed.
    for unit_size, per_unit in ((8, 0), (8, 1)):
        plan, executed = extend(tmp_path, store, study_text(names_with(0, 5, 3), datasets=("canaries", "facts", "divergence"),
                                                           models=("demo", "demo2"), unit_size=unit_size, per_unit=per_unit), mpi)
        assert "adds 0 units" in plan and executed == 0
        check_exactly_once(store, grid)
    counts = status_examples(store)
    assert counts and all(counts[cell] == ROWS[cell[1]] for cell in grid), counts  # status counts each example once
    with sqlite3.connect(store) as db:  # every version of the study file kept, with what it added
        assert [row[0] for row in db.execute("SELECT units_added FROM study_versions ORDER BY version")] == [5, 5, 2, 7, 0, 0]


def test_removing_something_is_refused_with_what_it_would_orphan(tmp_path):
    store = tmp_path / "s.sqlite"
    (tmp_path / "study.toml").write_text(study_text(names_with(0, 5)))
    run_memsweep("run", tmp_path / "study.toml", "--db", store)
    (tmp_path / "study.toml").write_text(study_text(names_with(0), datasets=("canaries",)))
    plan = run_memsweep("plan", tmp_path / "study.toml", "--db", store).stdout
    assert "refuses it" in plan and "intervention 'short_circuit:5' of model 'demo'" in plan and "dataset 'facts' on model 'demo'" in plan
    refused = run_memsweep("run", tmp_path / "study.toml", "--db", store, "--extend", check=False)
    assert refused.returncode != 0 and "no longer names" in refused.stderr and "short_circuit:5" in refused.stderr
    assert units_in_latest_run(store) == 5  # the first run's units; the refused extension started no run


def test_kill_during_an_extension_then_resume(tmp_path):
    store = tmp_path / "s.sqlite"
    study = tmp_path / "study.toml"
    study.write_text(study_text(names_with(0), unit_size=2, per_unit=1))
    run_memsweep("run", study, "--db", store)
    before = store_examples(store)
    study.write_text(study_text(names_with(0, 1, 2, 3, 4, 5), unit_size=2, per_unit=1))  # 5 blocks x (6 + 4) shards = 50 units
    job = subprocess.Popen([MEMSWEEP_BIN, "run", str(study), "--db", str(store), "--extend"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    done = 0
    deadline = time.monotonic() + 120
    while done < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
        with sqlite3.connect(store, timeout=10) as db:
            done = db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone()[0] - 20
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert 5 <= done < 50, done  # killed in the middle
    run_memsweep("run", study, "--db", store)  # the store now holds this version: a plain rerun resumes it
    after = store_examples(store)
    assert all(after[key] == value for key, value in before.items())
    check_exactly_once(store, {("demo", d, n) for d in ("canaries", "facts") for n in names_with(0, 1, 2, 3, 4, 5)})
    assert unit_count(store) == 20 + 50
