"""Fault injection, one test per row of tests/FAULTS.md (keep the two in step). Store and scheduling faults use
the MPI flow program (tests/orchestrator/mpi_flow_main.cpp: the real coordinator, transport and SQLite store;
workers compute deterministic results); faults that need a model use the real `memsweep run` on tiny random
models. After each fault: `PRAGMA integrity_check` is ok, no unit or result row is duplicated, and a rerun
completes with the results of an undisturbed run."""
import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch

from memsweep_testing import (MEMSWEEP_BIN, LoggedProcess, check_examples_stored_once, example_rows, make_gpt_neo, make_gpt_neox, remount,
                              tmpfs)

MPI_FLOW = os.environ.get("MEMSWEEP_MPI_FLOW_BIN", str(Path(__file__).resolve().parents[2] / "build" / "tests" / "mpi_flow"))
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")

# small: 3 layers -> 4 interventions, large: 4 -> 5; mpi_flow gives a dataset 5 x len(name) examples (alpha 25,
# beta_set 40). With unit_size 1 and one intervention per unit: (4 + 5) * 65 = 585 units.
FLOW_STUDY = """
[run]
unit_size = {unit_size}
interventions_per_unit = {per_unit}
unit_timeout_s = {timeout}
cancel_wait_s = 2
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
FLOW_UNITS = 585


def make_flow_study(folder, unit_size=1, per_unit=1, timeout=60):
    folder.mkdir(parents=True, exist_ok=True)
    for name, layers in (("small", 3), ("large", 4)):
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(f'{{"num_hidden_layers": {layers}}}')
    (folder / "alpha.jsonl").write_text("{}\n")
    (folder / "beta.jsonl").write_text("{}\n")
    study = folder / "study.toml"
    study.write_text(FLOW_STUDY.format(unit_size=unit_size, per_unit=per_unit, timeout=timeout))
    return study


def flow_command(study, store, ranks=1):
    base = [MPI_FLOW, str(study), str(store), str(Path(store).parent)]
    return base if ranks == 1 else ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *base]


def run_flow(study, store, ranks=1, unit_seconds=0.0, timeout=300, **kwargs):
    env = dict(MPI_ENV, MEMSWEEP_TEST_UNIT_SECONDS=str(unit_seconds))
    return subprocess.run(flow_command(study, store, ranks), env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def start_flow(study, store, ranks=1, unit_seconds=0.0):
    env = dict(MPI_ENV, MEMSWEEP_TEST_UNIT_SECONDS=str(unit_seconds))
    return LoggedProcess(flow_command(study, store, ranks), env=env)


def statuses(store):
    try:
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # not created yet
        return {}


def wait_for_done(job, store, count, timeout=120):
    deadline = time.time() + timeout
    while statuses(store).get("done", 0) < count:
        assert job.poll() is None, f"the job ended before {count} units were done:\n{job.stdout.read()}"
        assert time.time() < deadline, f"fewer than {count} units done in {timeout} s"
        time.sleep(0.02)


def interrupted_store(study, store, done=60):
    """A store with `done` or more units done and the rest pending: mpi_flow stopped by SIGTERM (exit 0). Units take
    10 ms, so the study cannot finish first even on a tmpfs (no fsync)."""
    job = start_flow(study, store, unit_seconds=0.001)
    wait_for_done(job, store, done)
    job.send_signal(signal.SIGTERM)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 0, output
    found = statuses(store)
    assert 0 < found.get("done", 0) < sum(found.values()), found
    return found


def check_store(store, units):
    """integrity_check ok, `units` units, each aggregate and example row once; returns the unit statuses."""
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM units").fetchone() == (units, units)
        assert db.execute("SELECT COUNT(*) FROM (SELECT unit_id, intervention_id FROM aggregates GROUP BY 1, 2 "
                          "HAVING COUNT(*) > 1)").fetchone() == (0,)
        check_examples_stored_once(db)
        # results only for done units, and every done unit has all of its results
        assert db.execute("SELECT COUNT(*) FROM aggregates g JOIN units u ON u.id = g.unit_id WHERE u.status != 'done'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM units u WHERE u.status = 'done' AND (SELECT COUNT(*) FROM aggregates g WHERE "
                          "g.unit_id = u.id) != (SELECT COUNT(*) FROM unit_interventions i WHERE i.unit_id = u.id)").fetchone() == (0,)
    return statuses(store)


def contents(store):
    with contextlib.closing(sqlite3.connect(store)) as db:
        aggregates = db.execute("SELECT u.key, i.name, g.totals_json FROM aggregates g JOIN units u ON u.id = g.unit_id "
                                "JOIN interventions i ON i.id = g.intervention_id ORDER BY 1, 2").fetchall()
    return aggregates, [(key, name, index, values) for key, name, index, values, _, _ in example_rows(store)]


def assert_complete(store, reference, units):
    assert check_store(store, units) == {"done": units}
    assert contents(store) == contents(reference)


@pytest.fixture(scope="module")
def flow_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flow_reference")
    study = make_flow_study(folder)
    store = folder / "reference.sqlite"
    result = run_flow(study, store)
    assert result.returncode == 0, result.stderr
    assert check_store(store, FLOW_UNITS) == {"done": FLOW_UNITS}
    return store


# --- the table ----------------------------------------------------------------------------------------------

def test_rank0_killed_mid_commit(tmp_path, flow_reference):
    """SIGKILL of rank 0 while a write transaction is open (its rollback journal exists), three times; each rerun
    rolls the hot journal back and goes on; the last completes with every unit once."""
    study = make_flow_study(tmp_path)
    store = tmp_path / "s.sqlite"
    journal = Path(str(store) + "-journal")
    mid_transaction = 0
    for round in range(1, 4):
        job = start_flow(study, store)
        wait_for_done(job, store, 100 * round)
        deadline = time.time() + 10
        while not journal.exists() and time.time() < deadline:
            pass
        job.kill()
        job.communicate(timeout=30)
        mid_transaction += journal.exists()
    print(f"rank 0 killed with its rollback journal present (mid-transaction) {mid_transaction} times of 3")
    assert mid_transaction >= 1
    result = run_flow(study, store)
    assert result.returncode == 0, result.stderr
    assert not journal.exists()
    assert_complete(store, flow_reference, FLOW_UNITS)


def test_disk_full_names_the_store_and_a_rerun_with_room_completes(tmp_path, flow_reference):
    """The store's file system fills up mid-study (a tmpfs of 3/4 of the finished store's size): rank 0 stops with an
    error naming the store; what was committed is intact; with room, the rerun completes."""
    study = make_flow_study(tmp_path / "study")
    size = (flow_reference.stat().st_size * 3 // 4 + 4095) // 4096 * 4096
    with tmpfs(tmp_path / "small", size) as folder:
        store = folder / "s.sqlite"
        full = run_flow(study, store)
        assert full.returncode == 1, full.stderr
        assert f"store {store}" in full.stderr and "database or disk is full" in full.stderr, full.stderr
        found = check_store(store, FLOW_UNITS)
        assert 0 < found.get("done", 0) < FLOW_UNITS and found.get("running", 0) <= 1, found
        remount(folder, "size=256m")
        again = run_flow(study, store)
        assert again.returncode == 0, again.stderr
        assert_complete(store, flow_reference, FLOW_UNITS)


def test_disk_full_by_file_size_limit(tmp_path, flow_reference):
    """The same without mount rights: RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG)."""
    study = make_flow_study(tmp_path)
    store = tmp_path / "s.sqlite"
    limit = flow_reference.stat().st_size * 3 // 4

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an ignored signal stays ignored across exec

    full = run_flow(study, store, preexec_fn=limited)
    assert full.returncode == 1, full.stderr
    assert f"store {store}" in full.stderr and "disk I/O error" in full.stderr, full.stderr
    found = check_store(store, FLOW_UNITS)
    assert 0 < found.get("done", 0) < FLOW_UNITS, found
    again = run_flow(study, store)
    assert again.returncode == 0, again.stderr
    assert_complete(store, flow_reference, FLOW_UNITS)


def test_read_only_store_is_refused_untouched(tmp_path, flow_reference):
    """A half-done store on a file system remounted read-only (root ignores file modes; a non-root user gets
    chmod 444 instead): refused at open with a message naming it, nothing changed; writable again, the rerun
    completes."""
    study = make_flow_study(tmp_path / "study")
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:
            folder = stack.enter_context(tmpfs(tmp_path / "ro", 256 << 20))
        else:
            folder = tmp_path / "ro"
            folder.mkdir()
        store = folder / "s.sqlite"
        before = interrupted_store(study, store)
        if os.geteuid() == 0:
            remount(folder, "ro")
        else:
            store.chmod(0o444)
        refused = run_flow(study, store)
        assert refused.returncode == 1
        assert f"cannot open the store {store} for writing: the file or its file system is read-only" in refused.stderr, refused.stderr
        assert check_store(store, FLOW_UNITS) == before
        if os.geteuid() == 0:
            remount(folder, "rw")
        else:
            store.chmod(0o644)
        again = run_flow(study, store)
        assert again.returncode == 0, again.stderr
        assert_complete(store, flow_reference, FLOW_UNITS)


def test_store_from_a_newer_schema_is_refused_untouched(tmp_path, flow_reference):
    study = make_flow_study(tmp_path)
    store = tmp_path / "s.sqlite"
    before = interrupted_store(study, store)
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("INSERT INTO schema_version (version, applied_at) VALUES (999, 'the future')")
        db.commit()
    refused = run_flow(study, store)
    assert refused.returncode == 1
    assert f"the store {store} has schema version 999, newer than this memsweep knows" in refused.stderr, refused.stderr
    assert check_store(store, FLOW_UNITS) == before
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT MAX(version) FROM schema_version").fetchone() == (999,)
    # The newer memsweep (here: the row taken out again) resumes it.
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("DELETE FROM schema_version WHERE version = 999")
        db.commit()
    again = run_flow(study, store)
    assert again.returncode == 0, again.stderr
    assert_complete(store, flow_reference, FLOW_UNITS)


def test_dataset_changed_between_runs_is_refused(tmp_path, flow_reference):
    """A dataset file edited between two runs (same size in examples, other bytes): refused by its content hash,
    store untouched, never mixed; with the original file back the rerun completes."""
    study = make_flow_study(tmp_path)
    store = tmp_path / "s.sqlite"
    before = interrupted_store(study, store)
    original = (tmp_path / "alpha.jsonl").read_text()
    (tmp_path / "alpha.jsonl").write_text(original + "{}\n")
    refused = run_flow(study, store)
    assert refused.returncode == 1
    assert "dataset 'alpha': " in refused.stderr and "changed since the store recorded it" in refused.stderr, refused.stderr
    assert check_store(store, FLOW_UNITS) == before
    (tmp_path / "alpha.jsonl").write_text(original)
    again = run_flow(study, store)
    assert again.returncode == 0, again.stderr
    assert_complete(store, flow_reference, FLOW_UNITS)


def rank_pid(folder, rank, timeout=30):
    path = folder / f"rank{rank}.pid"
    deadline = time.time() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.time() < deadline, f"no {path}"
        time.sleep(0.05)
    return int(path.read_text())


def test_hung_worker_times_out_and_its_unit_runs_elsewhere(tmp_path):
    """A worker stopped (SIGSTOP) mid-unit under mpirun -np 3: past unit_timeout_s its unit is requeued under a new
    attempt and done by the other worker; once everything is done rank 0 ends the job (MPI_Abort, exit 3)
    because the hung rank never answers. Every unit once; the rerun has nothing left to do."""
    study = make_flow_study(tmp_path, unit_size=4, per_unit=0, timeout=1)
    units = 2 * (7 + 10)
    store = tmp_path / "s.sqlite"
    reference = tmp_path / "r.sqlite"
    assert run_flow(study, reference).returncode == 0
    job = start_flow(study, store, ranks=3, unit_seconds=0.1)
    hung = None
    try:
        wait_for_done(job, store, 4)
        hung = rank_pid(tmp_path, 1)
        os.kill(hung, signal.SIGSTOP)
        output, _ = job.communicate(timeout=120)
    finally:
        if hung:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung, signal.SIGKILL)
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0, output
    assert "passed the unit timeout" in output and "never answered" in output, output
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'timeout'").fetchone() == (1,)
    assert_complete(store, reference, units)
    again = run_flow(study, store, ranks=3)
    assert again.returncode == 0, again.stderr
    assert_complete(store, reference, units)


# --- faults that need a model: the real `memsweep run` ---------------------------------------------------------

MODEL_STUDY = """
[run]
batch_size = {batch}
unit_size = 5
attempts = {attempts}
[interventions]
single_blocks = true
[[models]]
name = "neox"
path = "neox"
[[models]]
name = "neo"
path = "neo"
[[datasets]]
name = "rows"
kind = "memorization"
path = "rows.jsonl"
options = {{ prefix = 6 }}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    make_gpt_neox(folder / "neox", seed=3)
    make_gpt_neo(folder / "neo", seed=4)
    rows = torch.randint(1, 97, (60, 14), generator=torch.Generator().manual_seed(5)).tolist()
    (folder / "rows.jsonl").write_text("".join(json.dumps({"tokens": t}) + "\n" for t in rows))
    return folder


def memsweep(*args, timeout=300, **kwargs):
    return subprocess.run([MEMSWEEP_BIN, *map(str, args)], env=MPI_ENV, capture_output=True, text=True, timeout=timeout, **kwargs)


def test_checkpoint_truncated_after_the_study_started(models, tmp_path):
    """neo's model.safetensors is cut in half while the study runs neox's units: neo's units fail with an error
    naming the file (no attempts left: recorded failed), neox's complete; run exits 2. A plain rerun is refused before any
    work (the weights check names the file);
    with the checkpoint restored, `run --retry-failed` completes the study with the undisturbed run's results."""
    study = models / "truncated.toml"
    study.write_text(MODEL_STUDY.format(batch=1, attempts=2))
    units = 2 * 12
    reference = tmp_path / "reference.sqlite"
    assert memsweep("run", study, "--db", reference).returncode == 0
    store = tmp_path / "s.sqlite"
    checkpoint = models / "neo" / "model.safetensors"
    original = checkpoint.read_bytes()
    job = LoggedProcess([MEMSWEEP_BIN, "run", str(study), "--db", str(store)], env=MPI_ENV)
    try:
        wait_for_done(job, store, 1)
        checkpoint.write_bytes(original[: len(original) // 2])
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 2, output  # nothing left to run, units failed: not a success
        assert "12 unit(s) failed with their attempts used up" in output and "--retry-failed" in output, output
        found = check_store(store, units)
        assert found == {"done": 12, "failed": 12}, (found, output)
        status = subprocess.run([MEMSWEEP_BIN, "status", str(store)], capture_output=True, text=True).stdout
        assert "50.0%" in status and "12 unit(s) FAILED" in status, status  # failed units are not counted as done
        with contextlib.closing(sqlite3.connect(store)) as db:
            errors = {e for (e,) in db.execute("SELECT error FROM units WHERE status = 'failed'")}
        assert len(errors) == 1 and str(checkpoint) in errors.pop(), output
        plain = memsweep("run", study, "--db", store)  # the checkpoint is still broken: refused before any work
        assert plain.returncode == 1 and str(checkpoint) in plain.stderr, plain.stderr
        assert check_store(store, units) == found
    finally:
        if job.poll() is None:
            job.kill()
        checkpoint.write_bytes(original)
    again = memsweep("run", study, "--db", store, "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert "12 failed units are pending again" in again.stderr
    assert check_store(store, units) == {"done": units}
    assert contents(store) == contents(reference)


OOM_STUDY = """
[run]
batch_size = {batch}
unit_size = 16
attempts = 6
[interventions]
baseline = true
names = ["short_circuit:1"]
[[models]]
name = "long"
path = "long"
[[datasets]]
name = "long_rows"
kind = "divergence"
path = "long_rows.jsonl"
"""


def peak_virtual_memory(command):
    """Runs a command to its end, polling its VmPeak (bytes); returns (CompletedProcess-like, peak)."""
    job = LoggedProcess(command, merge=False, env=MPI_ENV)
    peak = 0
    while job.poll() is None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{job.pid}/status").read_text().splitlines():
                if line.startswith("VmPeak:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(0.005)
    out, err = job.communicate()
    return subprocess.CompletedProcess(command, job.returncode, out, err), peak


def test_out_of_memory_in_a_unit_halves_the_batch_until_it_fits(tmp_path):
    """A real allocation failure, no test hook: a divergence unit (full-vocabulary log-probabilities at every layer
    and position) over 16 rows of 1024 tokens with a 32,768-token vocabulary (~130 MB per row and layer; attention
    is fused and allocates little) under an
    address-space limit (RLIMIT_AS) of what a batch-1 run peaked at + 600 MB. The batch of 16 cannot be
    allocated; the worker reports out-of-memory, each retry halves the batch until it fits, and the results
    equal an unlimited run's."""
    make_gpt_neox(tmp_path / "long", seed=7, max_position_embeddings=1024, vocab_size=32768)
    rows = torch.randint(1, 97, (16, 1024), generator=torch.Generator().manual_seed(8)).tolist()
    (tmp_path / "long_rows.jsonl").write_text("".join(json.dumps({"tokens": t}) + "\n" for t in rows))
    one = tmp_path / "one.toml"
    one.write_text(OOM_STUDY.format(batch=1))
    reference, peak = peak_virtual_memory([MEMSWEEP_BIN, "run", str(one), "--db", str(tmp_path / "reference.sqlite")])
    assert reference.returncode == 0, reference.stderr
    # Room for a batch of one after failed attempts have fragmented the heap (300 MB was seen too tight with some
    # builds); a batch of 16 still needs gigabytes more.
    limit = peak + (600 << 20)
    study = tmp_path / "sixteen.toml"
    study.write_text(OOM_STUDY.format(batch=16))
    store = tmp_path / "s.sqlite"
    limited = memsweep("run", study, "--db", store, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    print(f"RLIMIT_AS {limit >> 20} MiB (batch-1 peak {peak >> 20} MiB)")
    assert limited.returncode == 0, limited.stderr
    with contextlib.closing(sqlite3.connect(store)) as db:
        batch = db.execute("SELECT batch_size FROM units").fetchone()[0]
        failed = db.execute("SELECT error FROM attempts WHERE outcome = 'failed' ORDER BY attempt").fetchall()
    print(f"out-of-memory attempts: {len(failed)}, the unit finished with batch size {batch}")
    assert len(failed) >= 1 and batch is not None and batch < 16
    assert all(e.startswith("out of memory: ") and "can't allocate memory" in e for (e,) in failed), failed
    assert check_store(store, 1) == {"done": 1}
    (_, examples), (_, expected) = contents(store), contents(tmp_path / "reference.sqlite")
    assert len(examples) == len(expected) == 2 * 16
    for (key, name, index, values), (key2, name2, index2, values2) in zip(examples, expected):
        assert (key, name, index) == (key2, name2, index2)
        assert values.keys() == values2.keys()
        for metric in values:  # another batch size pads differently: equal up to float rounding
            assert values[metric] == pytest.approx(values2[metric], rel=1e-4, abs=1e-5), (key, name, index, metric)
