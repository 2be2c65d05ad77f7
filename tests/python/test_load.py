"""Load: a study of many tiny units over `mpirun -np 4` (mpi_flow: the real coordinator, MPI transport and SQLite
store; workers answer at once with deterministic results), and the coordinator against 512 fake workers
(bench/scheduler_capacity). CI runs 2,000 units; MEMSWEEP_LOAD_UNITS=20000 is the issue's on-demand size.
Prints rank 0's units/s and per-example rows/s (bench/RESULTS.md records them)."""
import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

BUILD = Path(os.environ.get("MEMSWEEP_MPI_FLOW_BIN", Path(__file__).resolve().parents[2] / "build" / "tests" / "mpi_flow")).parents[1]
MPI_FLOW = os.environ.get("MEMSWEEP_MPI_FLOW_BIN", str(BUILD / "tests" / "mpi_flow"))
CAPACITY = os.environ.get("MEMSWEEP_SCHEDULER_CAPACITY_BIN", str(BUILD / "bench" / "scheduler_capacity"))
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               MEMSWEEP_TEST_UNIT_SECONDS="0")
UNITS = int(os.environ.get("MEMSWEEP_LOAD_UNITS", "2000"))
ROWS_PER_UNIT = 4
INTERVENTIONS = 20  # a 19-layer model: baseline + 19 single blocks, one intervention per unit


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_many_tiny_units_over_four_ranks(tmp_path, journal):
    units = UNITS if journal == "wal" else min(UNITS, 200)  # the rollback journal is fsync-bound: see RESULTS.md
    # mpi_flow gives a dataset 5 x len(name) examples; pick the name length that makes `units` units.
    examples = units // INTERVENTIONS * ROWS_PER_UNIT
    name = "d" * (examples // 5)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"num_hidden_layers": 19}')
    (tmp_path / "d.jsonl").write_text("{}\n")
    study = tmp_path / "study.toml"
    study.write_text(f'[run]\nunit_size = {ROWS_PER_UNIT}\ninterventions_per_unit = 1\n[interventions]\nsingle_blocks = true\n'
                     f'[[models]]\nname = "m"\npath = "m"\n[[datasets]]\nname = "{name}"\nkind = "memorization"\npath = "d.jsonl"\n'
                     f'[store]\njournal_mode = "{journal}"\n')
    store = tmp_path / "s.sqlite"
    start = time.perf_counter()
    job = subprocess.run(["mpirun", "-np", "4", "--oversubscribe", "--bind-to", "none", MPI_FLOW, str(study), str(store),
                          str(tmp_path)], env=MPI_ENV, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    assert job.returncode == 0, job.stderr[-3000:]
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        done, = db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone()
        total, = db.execute("SELECT COUNT(*) FROM units").fetchone()
        rows, = db.execute("SELECT SUM(u.count) FROM example_values v JOIN units u ON u.id = v.unit_id WHERE v.name = 'exact_match'").fetchone()
    assert done == total == units and rows == units * ROWS_PER_UNIT
    print(f"\nload ({journal}): {units} units, {rows} example rows over mpirun -np 4 in {seconds:.1f} s (MPI start-up "
          f"included): {units / seconds:.0f} units/s, {rows / seconds:.0f} example rows/s at rank 0")


def test_scheduler_capacity_with_512_fake_workers():
    if not Path(CAPACITY).exists():
        pytest.skip(f"{CAPACITY} is not built")
    result = subprocess.run([CAPACITY, "512", str(max(UNITS, 2000)), "1", "wal"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    print("\n" + result.stdout)
