"""One writer per store, and rank 0's errors end an MPI job. `memsweep run` holds STORE.lease beside the store's
shared path (orchestrator/store/lease.h): a second run of the same store is refused at once, naming the holder, and
recomputes nothing; a holder killed with SIGKILL, a requeued SLURM job's earlier incarnation and a holder whose
heartbeat expired are taken over; two --scratch runs of one study collide at the shared path. Under mpirun, rank 0's
errors (the refusal, a changed study, tests/FAULTS.md's store rows) end every rank promptly with the error printed,
where the job used to hang in MPI_Finalize."""
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from memsweep_testing import MEMSWEEP_BIN, LoggedProcess, make_gpt_neox, remount, tmpfs

MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")
ROWS = 200
UNITS = 5 * ROWS // 2  # baseline + 4 blocks, one intervention and 2 rows per unit


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lease")
    make_gpt_neox(folder / "model", seed=4)
    rows = [[(i * 7 + t) % 96 + 1 for t in range(24)] for i in range(ROWS)]
    (folder / "rows.jsonl").write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    return folder


def write_study(folder, model, name="study.toml", extra="", limit=ROWS):
    study = folder / name
    study.write_text(f'''[[models]]
name = "m"
path = "{model / 'model'}"
[[datasets]]
name = "rows"
kind = "memorization"
path = "{model / 'rows.jsonl'}"
options = {{ prefix = 12, limit = {limit} }}
[interventions]
single_blocks = true
[run]
unit_size = 2
batch_size = 2
interventions_per_unit = 1
cancel_wait_s = 5
{extra}
[store]
path = "results/study.sqlite"
''')
    return study


def start(*args, env=None):
    return LoggedProcess([MEMSWEEP_BIN, *map(str, args)], merge=False, env=env or dict(os.environ, OMP_NUM_THREADS="1"))


def run(*args, env=None, mpi_ranks=0, timeout=120):
    command = [MEMSWEEP_BIN, *map(str, args)]
    if mpi_ranks:
        command = ["mpirun", "-np", str(mpi_ranks), "--oversubscribe", "--bind-to", "none", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env or dict(MPI_ENV))


def wait_for(path, job, timeout=60):
    deadline = time.time() + timeout
    while not path.exists():
        assert job.poll() is None, job.communicate()[1]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def attempts_per_unit(store):
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        return db.execute("SELECT MAX(n), COUNT(*) FROM (SELECT unit_id, COUNT(*) AS n FROM attempts GROUP BY unit_id)").fetchone()


def last_run_outcome(store):
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        return db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0]


def write_lease(lease, **fields):
    holder = dict(host="node-17", pid=4242, slurm_job_id="", restart_count=0, started="2026-12-07T08:00:00Z",
                  heartbeat=time.time(), token="theirs")
    holder.update(fields)
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.write_text(json.dumps(holder) + "\n")


def test_a_second_run_is_refused_and_recomputes_nothing(model, tmp_path):
    study = write_study(tmp_path, model)
    store, lease = tmp_path / "results" / "study.sqlite", tmp_path / "results" / "study.sqlite.lease"
    first = start("run", study)
    wait_for(lease, first)
    holder = json.loads(lease.read_text())
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    began = time.monotonic()
    second = run("run", study)
    assert second.returncode == 1 and time.monotonic() - began < 10, second.stderr
    assert f"is in use by memsweep run on {socket.gethostname()} (pid {first.pid})" in second.stderr, second.stderr
    status = run("status", store).stdout
    assert f"held by memsweep run on {socket.gethostname()} (pid {first.pid})" in status, status
    # The same under mpirun: rank 0's refusal ends every rank at once, with the error printed.
    began = time.monotonic()
    refused = run("run", study, mpi_ranks=3, timeout=60)
    assert refused.returncode != 0 and "is in use by memsweep run" in refused.stderr, refused.stderr
    print(f"second run refused in {time.monotonic() - began:.1f} s under mpirun -np 3")
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    assert attempts_per_unit(store) == (1, UNITS)  # every unit computed once
    assert last_run_outcome(store) == "finished" and not lease.exists()


def test_a_killed_holder_is_taken_over_at_once(model, tmp_path):
    study = write_study(tmp_path, model)
    store, lease = tmp_path / "results" / "study.sqlite", tmp_path / "results" / "study.sqlite.lease"
    first = start("run", study)
    wait_for(lease, first)
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert lease.exists()
    resumed = run("run", study)
    assert resumed.returncode == 0, resumed.stderr
    assert f"its process {first.pid} on this host is gone" in resumed.stderr
    assert last_run_outcome(store) == "finished" and not lease.exists()


@pytest.mark.parametrize("case", ["fresh, another host", "expired, another host", "requeued job", "same job, not requeued"])
def test_a_lease_left_by_another_host_or_job(model, tmp_path, case):
    study = write_study(tmp_path, model, limit=4)
    lease = tmp_path / "results" / "study.sqlite.lease"
    env = dict(MPI_ENV, SLURM_JOB_ID="777", SLURM_RESTART_COUNT="1")
    if case == "fresh, another host":
        write_lease(lease)
    elif case == "expired, another host":
        write_lease(lease, heartbeat=time.time() - 400)
    else:
        write_lease(lease, slurm_job_id="777", restart_count=1 if case == "same job, not requeued" else 0)
    result = run("run", study, env=env)
    if case in ("fresh, another host", "same job, not requeued"):
        assert result.returncode == 1, result.stderr
        assert "is in use by memsweep run on node-17 (pid 4242" in result.stderr and "300 s after its last heartbeat" in result.stderr
        assert json.loads(lease.read_text())["token"] == "theirs"  # left alone
        assert not (tmp_path / "results" / "study.sqlite").exists() or "finished" != last_run_outcome(tmp_path / "results" / "study.sqlite")
    else:
        assert result.returncode == 0, result.stderr
        why = "its heartbeat stopped" if case.startswith("expired") else "SLURM requeued job 777 (restart 0 -> 1)"
        assert "took over the store's lease" in result.stderr and why in result.stderr, result.stderr
        assert not lease.exists()


def test_two_scratch_runs_of_one_study_collide_at_the_shared_path(model, tmp_path):
    study = write_study(tmp_path, model)
    lease = tmp_path / "results" / "study.sqlite.lease"
    first = start("run", study, "--scratch", tmp_path / "scratch_a", "--checkpoint-every", 1)
    wait_for(lease, first)
    second = run("run", study, "--scratch", tmp_path / "scratch_b")
    assert second.returncode == 1 and "is in use by memsweep run" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    assert attempts_per_unit(tmp_path / "results" / "study.sqlite") == (1, UNITS)


def test_a_changed_study_under_mpirun_ends_every_rank_with_the_error(model, tmp_path):
    study = write_study(tmp_path, model, limit=4)
    first = run("run", study, "--db", tmp_path / "small.sqlite", env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert first.returncode == 0, first.stderr
    write_study(tmp_path, model, extra="attempts = 5", limit=4)  # another file: refused without --extend
    began = time.monotonic()
    changed = run("run", study, "--db", tmp_path / "small.sqlite", mpi_ranks=3, timeout=60)
    assert changed.returncode != 0 and "--extend" in changed.stderr, changed.stderr
    print(f"changed study refused under mpirun -np 3 in {time.monotonic() - began:.1f} s")
    assert last_run_outcome(tmp_path / "small.sqlite") == "finished"


@pytest.mark.parametrize("fault", ["newer schema", "changed dataset", "read-only store", "disk full"])
def test_store_faults_under_mpirun_end_every_rank_with_the_error(model, tmp_path, fault):
    """tests/FAULTS.md's store rows under `mpirun -np 3`: rank 0's error is printed and every rank ends within the time
    limit (the job used to hang in MPI_Finalize: workers waiting for orders). Committed results stay."""
    with contextlib.ExitStack() as stack:
        folder = tmp_path / "store"
        if fault in ("read-only store", "disk full"):
            size = 512 << 10 if fault == "disk full" else 64 << 20  # the finished store takes ~770 KB
            folder = stack.enter_context(tmpfs(folder, size))
        rows = tmp_path / "rows.jsonl"
        rows.write_text((model / "rows.jsonl").read_text())
        study = write_study(tmp_path, model, limit=ROWS if fault == "disk full" else 4)
        study.write_text(study.read_text().replace(str(model / "rows.jsonl"), str(rows)))
        store = folder / "s.sqlite"
        if fault != "disk full":
            first = run("run", study, "--db", store, env=dict(os.environ, OMP_NUM_THREADS="1"))
            assert first.returncode == 0, first.stderr
        if fault == "newer schema":
            with contextlib.closing(sqlite3.connect(store)) as db:
                db.execute("INSERT INTO schema_version (version, applied_at) VALUES (999, 'the future')")
                db.commit()
            expected = "has schema version 999, newer than this memsweep knows"
        elif fault == "changed dataset":
            rows.write_text(rows.read_text() + json.dumps({"tokens": [1] * 24}) + "\n")
            expected = "changed since the store recorded it"
        elif fault == "read-only store":
            remount(folder, "ro")
            expected = "for writing: the file or its file system is read-only"
        else:
            expected = "database or disk is full"
        began = time.monotonic()
        result = run("run", study, "--db", store, mpi_ranks=3, timeout=90)
        took = time.monotonic() - began
        assert result.returncode != 0 and expected in result.stderr, result.stderr
        if fault == "read-only store":
            remount(folder, "rw")
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            done = db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone()[0]
        if fault == "disk full":  # mid-run, with workers busy: committed units stay, the job is aborted
            assert 0 < done < UNITS and "ending the job with MPI_Abort" in result.stderr, (done, result.stderr)
        print(f"{fault}: every rank ended in {took:.1f} s, exit {result.returncode}")


@pytest.mark.parametrize("squeue_says, taken", [("", True), ("COMPLETED", True), ("RUNNING", False), (None, False)])
def test_a_lease_of_another_slurm_job_that_ended_is_taken_over(model, tmp_path, squeue_says, taken):
    """A --chain successor finds its predecessor's lease (another job id, another node, killed): squeue decides. No
    squeue (None) leaves it to the heartbeat."""
    study = write_study(tmp_path, model, limit=4)
    lease = tmp_path / "results" / "study.sqlite.lease"
    write_lease(lease, slurm_job_id="500")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if squeue_says is not None:
        (bin_dir / "squeue").write_text(f"#!/bin/sh\n[ \"$3\" = 500 ] && printf '{squeue_says}'\n")
        (bin_dir / "squeue").chmod(0o755)
    env = dict(MPI_ENV, SLURM_JOB_ID="501", SLURM_RESTART_COUNT="0", PATH=f"{bin_dir}:/usr/bin:/bin")
    result = run("run", study, env=env)
    if taken:
        assert result.returncode == 0 and "its SLURM job 500 has ended" in result.stderr, result.stderr
    else:
        assert result.returncode == 1 and "is in use by memsweep run on node-17 (pid 4242, SLURM job 500" in result.stderr


def test_ctrl_c_requeues_in_flight_units_and_exits_130(model, tmp_path):
    study = write_study(tmp_path, model)
    store = tmp_path / "results" / "study.sqlite"
    job = start("run", study)
    wait_for(store, job)
    deadline = time.time() + 60
    while True:
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
            if db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone()[0] >= 5:
                break
        assert time.time() < deadline and job.poll() is None
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130 and "interrupted (Ctrl-C)" in err, err
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        states = dict(db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall())
    assert "running" not in states and states.get("pending", 0) > 0, states  # requeued, nothing left running
    assert not (tmp_path / "results" / "study.sqlite.lease").exists()
    again = run("run", study)
    assert again.returncode == 0, again.stderr
    assert attempts_per_unit(store)[1] == UNITS


def test_a_rerun_waits_for_an_ending_holder_on_its_host(model, tmp_path):
    """A crashed job's rank 0 may still be committing when the rerun starts: a holder on this host whose lease says it
    is ending is waited for (then taken over), where a running one is refused at once."""
    study = write_study(tmp_path, model, limit=4)
    lease = tmp_path / "results" / "study.sqlite.lease"
    ending = subprocess.Popen(["sleep", "2"])  # its pid is what the lease names
    write_lease(lease, host=socket.gethostname(), pid=ending.pid, stopping=True)
    began = time.monotonic()
    result = run("run", study)
    assert result.returncode == 0, result.stderr
    assert "which is ending, to release the store" in result.stderr and f"its process {ending.pid} on this host is gone" in result.stderr
    assert 1.0 < time.monotonic() - began < 60
    ending.wait()
