"""The MPI flow end to end without models (tests/orchestrator/mpi_flow_main.cpp: the real MPI transport,
coordinator and SQLite store; workers compute deterministic results): 3 ranks give the 1-rank store; a worker
or rank 0 killed with SIGKILL mid-study, then a rerun, gives every unit exactly once and the same results;
SIGTERM and SIGUSR1 stop rank 0 cleanly (exit 0) with nothing left running."""
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from memsweep_testing import LoggedProcess, example_rows

MPI_FLOW = os.environ.get("MEMSWEEP_MPI_FLOW_BIN", str(Path(__file__).resolve().parents[2] / "build" / "tests" / "mpi_flow"))
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")

STUDY = """
[run]
unit_size = 4
unit_timeout_s = 60
drain_grace_s = {grace}
[interventions]
single_blocks = true
[[models]]
name = "small"
path = "small"
[[models]]
name = "large"
path = "large"
[[datasets]]
name = "alpha"
kind = "memorization"
path = "alpha.jsonl"
[[datasets]]
name = "beta_set"
kind = "memorization"
path = "beta.jsonl"
"""


def make_study(folder, grace=30):
    for name, layers in (("small", 3), ("large", 4)):
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(f'{{"num_hidden_layers": {layers}}}')
    (folder / "alpha.jsonl").write_text("{}\n")
    (folder / "beta.jsonl").write_text("{}\n")
    study = folder / "study.toml"
    study.write_text(STUDY.format(grace=grace))
    return study


def command(study, store, ranks):
    base = [MPI_FLOW, str(study), str(store), str(store.parent)]
    return base if ranks == 1 else ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *base]


def run(study, store, ranks, unit_seconds=0.0, timeout=120):
    env = dict(MPI_ENV, MEMSWEEP_TEST_UNIT_SECONDS=str(unit_seconds))
    return subprocess.run(command(study, store, ranks), env=env, capture_output=True, text=True, timeout=timeout)


def start(study, store, ranks, unit_seconds):
    env = dict(MPI_ENV, MEMSWEEP_TEST_UNIT_SECONDS=str(unit_seconds))
    return LoggedProcess(command(study, store, ranks), env=env)


def contents(store):
    """Aggregates and examples as comparable values, and a check that each is stored once."""
    with sqlite3.connect(store) as db:
        aggregates = db.execute("SELECT u.key, i.name, g.totals_json FROM aggregates g JOIN units u ON u.id = g.unit_id "
                                "JOIN interventions i ON i.id = g.intervention_id ORDER BY 1, 2").fetchall()
    return aggregates, [(key, name, index, values) for key, name, index, values, _, _ in example_rows(store)]


def statuses(store):
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall())


def wait_for_done(store, at_least, process, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the job ended early: {process.stdout.read()}")
        try:
            if statuses(store).get("done", 0) >= at_least:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    pytest.fail("no progress")


# (small: 4 interventions, large: 5) x (alpha: 25 examples -> 7 units, beta_set: 40 -> 10 units), one group each.
TOTAL_UNITS = 2 * (7 + 10)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    study = make_study(folder)
    result = run(study, folder / "one.sqlite", 1)
    assert result.returncode == 0, result.stderr
    assert statuses(folder / "one.sqlite") == {"done": TOTAL_UNITS}
    return contents(folder / "one.sqlite")


def test_three_ranks_equal_one_rank(tmp_path, reference):
    study = make_study(tmp_path)
    result = run(study, tmp_path / "three.sqlite", 3)
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(tmp_path / "three.sqlite") == {"done": TOTAL_UNITS}
    assert contents(tmp_path / "three.sqlite") == reference
    assert "rank 1" in result.stderr and "rank 2" in result.stderr


@pytest.mark.parametrize("victim", ["worker", "rank0"])
def test_sigkill_then_rerun_records_every_unit_once(tmp_path, reference, victim):
    study = make_study(tmp_path)
    store = tmp_path / "store.sqlite"
    job = start(study, store, 3, unit_seconds=0.15)
    wait_for_done(store, 5, job)
    pid = int((tmp_path / ("rank1.pid" if victim == "worker" else "rank0.pid")).read_text())
    os.kill(pid, signal.SIGKILL)
    job.wait(timeout=60)
    assert job.returncode != 0  # Open MPI ends the whole job when a rank dies
    left = statuses(store)
    assert left.get("done", 0) < TOTAL_UNITS
    if victim == "rank0":
        assert left.get("running", 0) >= 1  # what the dead job had handed out
    result = run(study, store, 3)
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(store) == {"done": TOTAL_UNITS}
    assert contents(store) == reference


def test_sigterm_requeues_in_flight_and_exits_0(tmp_path, reference):
    study = make_study(tmp_path)
    store = tmp_path / "store.sqlite"
    job = start(study, store, 3, unit_seconds=0.3)
    wait_for_done(store, 3, job)
    os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGTERM)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 0, output
    assert "SIGTERM" in output
    left = statuses(store)
    assert "running" not in left and left.get("pending", 0) > 0
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone() == ("interrupted",)
    result = run(study, store, 3)
    assert result.returncode == 0, result.stderr
    assert contents(store) == reference


def test_sigusr1_lets_in_flight_units_finish_then_exits_0(tmp_path, reference):
    study = make_study(tmp_path)
    store = tmp_path / "store.sqlite"
    job = start(study, store, 3, unit_seconds=0.3)
    wait_for_done(store, 3, job)
    os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGUSR1)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 0, output
    left = statuses(store)
    assert "running" not in left and left.get("pending", 0) > 0
    with sqlite3.connect(store) as db:
        outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome").fetchall())
        assert db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone() == ("drained",)
    assert "drained" not in outcomes  # with a 30 s grace every in-flight unit finished
    result = run(study, store, 3)
    assert result.returncode == 0, result.stderr
    assert contents(store) == reference


def wait_for_running(store, at_least, process, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the job ended early: {process.stdout.read()}")
        try:
            if statuses(store).get("running", 0) >= at_least:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    pytest.fail("no unit started")


def test_sigusr1_cancels_what_passes_the_grace_period(tmp_path, reference):
    # Units of 120 s: only the cancel rank 0 sends when the 0.2 s grace has passed can end the job in time.
    study = make_study(tmp_path, grace=0.2)
    store = tmp_path / "store.sqlite"
    job = start(study, store, 3, unit_seconds=120)
    wait_for_running(store, 2, job)
    os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGUSR1)
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 0, output
    with sqlite3.connect(store) as db:
        outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome").fetchall())
    assert outcomes.get("drained", 0) == 2
    assert statuses(store) == {"pending": TOTAL_UNITS}
    result = run(study, store, 3)
    assert result.returncode == 0, result.stderr
    assert contents(store) == reference


@pytest.mark.parametrize("ranks", [1, 3])
def test_sigterm_to_every_rank_abandons_long_units_and_exits_0(tmp_path, reference, ranks):
    # As srun delivers it: every rank gets SIGTERM. Workers abandon their 120 s units at the next batch.
    study = make_study(tmp_path)
    store = tmp_path / "store.sqlite"
    job = start(study, store, ranks, unit_seconds=120)
    wait_for_running(store, ranks - 1 if ranks > 1 else 1, job)
    time.sleep(0.2)
    for pid_file in tmp_path.glob("rank*.pid"):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    output, _ = job.communicate(timeout=30)
    assert job.returncode == 0, output
    assert statuses(store) == {"pending": TOTAL_UNITS}
    result = run(study, store, 3)
    assert result.returncode == 0, result.stderr
    assert statuses(store) == {"done": TOTAL_UNITS}
    assert contents(store) == reference
