"""memsweep on a real, single-host SLURM (Debian's slurm-wlm and munge, started by cluster/local_slurm.sh under a
temporary folder and stopped by pid): `memsweep submit` with the cpu_test template runs a study to completion; a
job that gets USR1 mid-run (`scancel --signal=USR1 --batch`) drains, requeues itself and completes; a job that is
requeued mid-run (`scontrol requeue`: SIGTERM, then SIGKILL after KillWait) resumes and completes; a --chain of two
singleton jobs runs one after the other. The USR1 and requeue jobs keep
their live store on node-local scratch and resume from the shared copy. Every store ends with every unit done
exactly once and the metrics of an uninterrupted run. Skips only where SLURM cannot run here (not root, no daemons)."""
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, check_examples_stored_once, example_rows, run_memsweep

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SLURM = ROOT / "cluster" / "local_slurm.sh"
DEMO = ROOT / "jobs" / "demo"

# The demo model on its three sets in units of 2 examples, one example per forward pass: 57 units, ~0.2 s each
# on one idle core, slow enough to be signalled mid-run.
STUDY = f"""
[study]
name = "slurm_demo"
[[models]]
name = "demo"
path = "{DEMO}"
dtype = "float32"
[[datasets]]
name = "canaries"
kind = "memorization"
path = "{DEMO / 'canaries.jsonl'}"
options = {{ prefix = 16 }}
tokenizer = "{DEMO / 'tokenizer.json'}"
[[datasets]]
name = "controls"
kind = "memorization"
path = "{DEMO / 'controls.jsonl'}"
options = {{ prefix = 16 }}
[[datasets]]
name = "divergence"
kind = "divergence"
path = "{DEMO / 'divergence.jsonl'}"
[interventions]
single_blocks = true
[run]
device = "cpu"
batch_size = 1
unit_size = 2
drain_grace_s = 30
cancel_wait_s = 5
"""
TOTAL_UNITS = 21 + 3 + 32


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the single-host SLURM runs its daemons as root (SlurmUser=root, munged): not root here")
    missing = [d for d in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "mpirun") if not shutil.which(d)]
    if missing:
        pytest.skip(f"no {', '.join(missing)} here (Debian: apt-get install slurm-wlm munge; .ci/setup does it)")
    folder = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))
    try:
        started = subprocess.run(["bash", LOCAL_SLURM, "start", folder], env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, f"local SLURM did not start: {started.stderr}\n" + logs(folder)
        yield env
    finally:
        subprocess.run(["bash", LOCAL_SLURM, "stop", folder], env=env, timeout=60)
        for name in ("munged", "slurmctld", "slurmd"):
            assert not (folder / f"{name}.pid").exists(), f"{name} was not stopped"


def logs(folder):
    return "".join(f"--- {p}\n{p.read_text()[-3000:]}\n" for p in sorted(Path(folder).glob("*.log")))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "study.toml"
    path.write_text(STUDY)
    reference = folder / "reference.sqlite"
    run_memsweep("run", path, "--db", reference)  # uninterrupted, one process
    return path, reference


def submit(slurm, study_path, name, *extra):
    folder = study_path.parent
    result = subprocess.run([MEMSWEEP_BIN, "submit", str(study_path), "--db", str(folder / f"{name}.sqlite"), "--job-name", name,
                             "--logs", str(folder / "logs"), "--time", "00:10:00", *map(str, extra)],
                            env=slurm, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), folder / f"{name}.sqlite", folder / "logs" / f"{name}-{result.stdout.strip()}.out"


def job_fields(slurm, job):
    text = subprocess.run(["scontrol", "show", "job", job], env=slurm, capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def wait_for_job(slurm, job, log, timeout=240):
    deadline = time.time() + timeout
    while job_fields(slurm, job).get("JobState") not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
        assert time.time() < deadline, f"job {job} still {job_fields(slurm, job).get('JobState')}\n" + (log.read_text() if log.exists() else "")
        time.sleep(0.5)
    fields = job_fields(slurm, job)
    assert fields["JobState"] == "COMPLETED", log.read_text()
    return fields


def done_units(store):
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM units WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def wait_until_mid_run(store, log, units=3, timeout=120):
    deadline = time.time() + timeout
    while done_units(store) < units:
        assert time.time() < deadline, "no unit finished\n" + (log.read_text() if log.exists() else "")
        time.sleep(0.05)
    assert done_units(store) < TOTAL_UNITS, "the study ended before the signal: make it longer"


def results(store):
    return [(key, name, index, values) for key, name, index, values, _, _ in example_rows(store)]


def check_complete_once(store, reference):
    """Every unit done, one row per unit, one aggregate per unit and intervention, one row per example; the
    metrics of the uninterrupted run. Returns the runs' outcomes."""
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status, COUNT(*) FROM units GROUP BY 1").fetchall() == [("done", TOTAL_UNITS)]
        assert db.execute("SELECT COUNT(*) FROM (SELECT key FROM units GROUP BY key HAVING COUNT(*) > 1)").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM (SELECT unit_id, intervention_id FROM aggregates GROUP BY 1, 2 HAVING COUNT(*) > 1)").fetchone() == (0,)
        check_examples_stored_once(db)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        outcomes = [row[0] for row in db.execute("SELECT outcome FROM runs ORDER BY id")]
    got, expected = results(store), results(reference)
    assert len(got) == len(expected) > 0
    for (key, name, index, values), (key2, name2, index2, values2) in zip(got, expected):
        assert (key, name, index) == (key2, name2, index2)
        for metric, value in values.items():
            assert value == pytest.approx(values2[metric], rel=1e-5, abs=1e-6), (key, name, index, metric)
    return outcomes


def test_submitted_study_completes(slurm, study):
    study_path, reference = study
    job, store, log = submit(slurm, study_path, "plain")
    fields = wait_for_job(slurm, job, log)
    assert check_complete_once(store, reference) == ["finished"]
    assert fields["Restarts"] == "0" and fields["Requeue"] == "1"
    assert "launcher exited with status 0" in log.read_text()


def test_usr1_mid_run_drains_requeues_and_completes(slurm, study):
    study_path, reference = study
    scratch = study_path.parent / "scratch"
    job, store, log = submit(slurm, study_path, "usr1", "--scratch", f"{scratch}/$SLURM_JOB_ID", "--checkpoint-every", 1)
    wait_until_mid_run(store, log)  # the shared copy: checkpoints every second
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=slurm, check=True)
    fields = wait_for_job(slurm, job, log)
    outcomes = check_complete_once(store, reference)
    text = log.read_text()
    assert "USR1: draining" in text and f"units remain: requeueing job {job}" in text, text
    assert outcomes[0] == "drained" and outcomes[-1] == "finished", (outcomes, text)
    assert int(fields["Restarts"]) >= 1
    assert "scratch: checkpoint" in text and "copied from" in text  # the second allocation started from the shared copy


def test_requeue_mid_run_resumes_and_completes(slurm, study):
    study_path, reference = study
    scratch = study_path.parent / "scratch"
    job, store, log = submit(slurm, study_path, "requeued", "--scratch", f"{scratch}/$SLURM_JOB_ID", "--checkpoint-every", 1)
    wait_until_mid_run(store, log)
    subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
    fields = wait_for_job(slurm, job, log)
    outcomes = check_complete_once(store, reference)
    assert int(fields["Restarts"]) >= 1, log.read_text()
    assert outcomes[-1] == "finished" and len(outcomes) >= 2, (outcomes, log.read_text())
    # SIGTERM reached rank 0, which requeued its in-flight units and ended its run before SIGKILL.
    assert outcomes[0] == "interrupted", (outcomes, log.read_text())


def test_singleton_chain_runs_one_job_after_the_other(slurm, study):
    """--chain 2 --no-requeue: two jobs of one name with --dependency=singleton; the second starts after the
    first ends and finds the study done."""
    study_path, reference = study
    folder = study_path.parent
    result = subprocess.run([MEMSWEEP_BIN, "submit", str(study_path), "--db", str(folder / "chain.sqlite"), "--job-name", "chain",
                             "--logs", str(folder / "logs"), "--chain", "2", "--no-requeue"], env=slurm, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split()
    assert job_fields(slurm, second)["Dependency"].startswith("singleton")
    fields = [wait_for_job(slurm, job, folder / "logs" / f"chain-{job}.out") for job in (first, second)]
    assert fields[0]["Requeue"] == "0"
    assert fields[1]["StartTime"] >= fields[0]["EndTime"]
    assert check_complete_once(folder / "chain.sqlite", reference) == ["finished", "finished"]


def test_refused_before_sbatch_and_an_empty_scratch_falls_back(slurm, study):
    """A changed study file without --extend is refused by submit itself (nothing queued, no script written), where
    the job used to wait in the queue and then die; a --scratch that expands to nothing on the node warns and keeps
    the store at its shared path instead of killing the batch script under `set -u`."""
    study_path, reference = study
    folder = study_path.parent
    changed = folder / "changed.toml"
    changed.write_text(STUDY + "\n# another version of the file\n")
    store = folder / "refused.sqlite"
    shutil.copy(reference, store)
    queued = subprocess.run(["squeue", "-h"], env=slurm, capture_output=True, text=True).stdout
    refused = subprocess.run([MEMSWEEP_BIN, "submit", str(changed), "--db", str(store), "--job-name", "refused", "--logs",
                              str(folder / "logs"), "--time", "00:10:00"], env=slurm, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "pass --extend" in refused.stderr, refused.stderr
    assert not (folder / "logs" / "refused.sbatch").exists()
    assert subprocess.run(["squeue", "-h"], env=slurm, capture_output=True, text=True).stdout == queued
    job, store, log = submit(slurm, study_path, "noscratch", "--scratch", "$MEMSWEEP_UNSET_SCRATCH_DIR")
    wait_for_job(slurm, job, log)
    assert check_complete_once(store, reference) == ["finished"]
    assert "--scratch '$MEMSWEEP_UNSET_SCRATCH_DIR' is empty" in log.read_text()
