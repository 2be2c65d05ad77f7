"""`memsweep submit` as SLURM users expect, against a fake sbatch that records its calls: everything that would fail
after the queue wait is refused before sbatch (a changed study without --extend, a GPU study without GPUs, a --time
sbatch would reject, an option the template would drop); --extend, --retry-failed, --qos, --constraint, --mem,
--mem-per-gpu and --sbatch lines reach the script; srun gets the CPUs per task; a --scratch that is empty on the node
falls back to the shared store. The real single-host SLURM runs in test_slurm_cluster.py (ctest -L cluster)."""
import os
import subprocess
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, make_gpt_neox, run_memsweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submit")
    make_gpt_neox(folder / "model")
    (folder / "rows.jsonl").write_text('{"tokens": [1, 2, 3, 4, 5, 6, 7, 8]}\n')
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {folder}/sbatch.calls\necho 4711\n')
    (bin_dir / "sbatch").chmod(0o755)
    return folder


def study(folder, name="study.toml", device="auto", extra=""):
    path = folder / name
    path.write_text(f'[[models]]\nname = "m"\npath = "model"\n[[datasets]]\nname = "d"\nkind = "memorization"\npath = "rows.jsonl"\n'
                    f'options = {{ prefix = 4 }}\n[run]\ndevice = "{device}"\n{extra}[store]\npath = "results/{path.stem}.sqlite"\n')
    return path


def submit(folder, *args):
    env = dict(os.environ, PATH=f"{folder / 'bin'}:{os.environ['PATH']}")
    (folder / "sbatch.calls").unlink(missing_ok=True)
    result = subprocess.run([MEMSWEEP_BIN, "submit", *map(str, args)], capture_output=True, text=True, env=env, timeout=60)
    calls = (folder / "sbatch.calls").read_text().splitlines() if (folder / "sbatch.calls").exists() else []
    return result, calls


@pytest.mark.parametrize("time_limit, ok", [("90", True), ("30:00", True), ("12:00:00", True), ("2-0", True), ("2-12:30", True),
                                            ("1-00:00:00", True), ("12h", False), ("1:2:3:4", False), ("", False)])
def test_time_in_every_form_sbatch_accepts(folder, time_limit, ok):
    result, calls = submit(folder, study(folder, device="cpu"), "--time", time_limit, "--dry-run")
    assert (result.returncode == 0) == ok, result.stderr
    if ok:
        assert f"#SBATCH --time={time_limit}" in result.stdout
    else:
        assert f"--time '{time_limit}' is not a SLURM time limit" in result.stderr


def test_a_gpu_study_without_gpus_is_refused_unless_cpu_on_purpose(folder):
    path = study(folder)  # device auto: workers would take GPUs
    result, calls = submit(folder, path, "--time", "1:00:00")
    assert result.returncode == 1 and "pass --gpus-per-node G, or --cpu" in result.stderr and calls == []
    result, calls = submit(folder, path, "--time", "1:00:00", "--cpu")
    assert result.returncode == 0 and result.stdout.strip() == "4711" and len(calls) == 1, result.stderr
    result, calls = submit(folder, path, "--time", "1:00:00", "--gpus-per-node", 4)
    assert result.returncode == 0 and len(calls) == 1


def test_a_changed_study_is_refused_before_sbatch_and_extend_passes_through(folder):
    path = study(folder, "grow.toml", device="cpu")
    run_memsweep("run", path)
    study(folder, "grow.toml", device="cpu", extra="attempts = 4\n")  # another version of the file
    result, calls = submit(folder, path, "--time", "1:00:00")
    assert result.returncode == 1 and "pass --extend" in result.stderr and calls == [], result.stderr
    result, calls = submit(folder, path, "--time", "1:00:00", "--extend", "--retry-failed")
    assert result.returncode == 0 and len(calls) == 1, result.stderr
    script = Path(calls[0].split()[-1]).read_text()
    assert "--extend --retry-failed" in script


def test_options_reach_the_script(folder):
    result, _ = submit(folder, study(folder), "--gpus-per-node", 2, "--cpus-per-worker", 6, "--qos", "high", "--constraint", "a100|h100",
                       "--mem", "200G", "--mem-per-gpu", "80G", "--sbatch=--reservation=r1", "--sbatch=--exclusive", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in ("#SBATCH --qos=high", "#SBATCH --constraint=a100|h100", "#SBATCH --mem=200G", "#SBATCH --mem-per-gpu=80G",
                     "#SBATCH --reservation=r1", "#SBATCH --exclusive", "#SBATCH --cpus-per-task=6",
                     "export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}"):
        assert expected in lines, expected
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert max(i for i, line in enumerate(lines) if line.startswith("#SBATCH")) < first_command  # sbatch reads them all
    plain, _ = submit(folder, study(folder), "--gpus-per-node", 2, "--dry-run")
    assert "--qos" not in plain.stdout and "--reservation" not in plain.stdout and "\n\n\n" not in plain.stdout
    custom = folder / "custom.sbatch"
    custom.write_text("#!/bin/bash\n#SBATCH --time={{time}}\nsrun {{memsweep}} run {{study}} {{run_args}}\n")
    result, _ = submit(folder, study(folder), "--gpus-per-node", 2, "--template", custom, "--qos", "high", "--dry-run")
    assert result.returncode == 1 and "has no {{qos}} placeholder, so --qos would be ignored" in result.stderr


def test_an_empty_scratch_on_the_node_falls_back_to_the_shared_store(folder):
    result, _ = submit(folder, study(folder, device="cpu"), "--scratch", "$NO_SUCH_SCRATCH_VARIABLE", "--dry-run")
    assert result.returncode == 0
    line = next(l for l in result.stdout.splitlines() if "memsweep_scratch_options" in l)
    assert "$(memsweep_scratch_options '$NO_SUCH_SCRATCH_VARIABLE' 600)" in line
    launch = ROOT / "cluster" / "launch.sh"
    for value, expected in (("", ""), ("/local/scratch", "--scratch /local/scratch --checkpoint-every 600")):
        env = dict(os.environ, SOME_TMP=value) if value else {k: v for k, v in os.environ.items() if k != "SOME_TMP"}
        shell = subprocess.run(["bash", "-c", f"set -uo pipefail; source {launch}; echo \"[$(memsweep_scratch_options '$SOME_TMP' 600)]\""],
                               capture_output=True, text=True, env=env)
        assert shell.returncode == 0 and shell.stdout.strip() == f"[{expected}]", shell.stderr
        if not value:
            assert "is empty on" in shell.stderr and "stays at its shared path" in shell.stderr
