"""Progress on long work: eval reports rows (or requests) done with rate and ETA; run logs each unit's start and end
with its duration, and a single process names its running unit; log lines carry UTC timestamps and never overwrite
the progress bar on a terminal; every model-running command chooses its intra-op threads as run does (the count is
tested, not the time)."""
import json
import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, make_gpt_neox, write_tokens

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "jobs" / "demo"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    make_gpt_neox(folder / "model")
    (folder / "rows.jsonl").write_text("".join(json.dumps({"tokens": [(i + t) % 96 + 1 for t in range(12)]}) + "\n" for i in range(40)))
    return folder


def memsweep(*args, env=None):
    result = subprocess.run([MEMSWEEP_BIN, *map(str, args)], capture_output=True, text=True, timeout=300,
                            env=env or dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    return result


def test_eval_reports_rows_and_requests_with_rate_and_eta(folder):
    err = memsweep("eval", "--model", folder / "model", "--task", f"memorization:{folder / 'rows.jsonl'}", "--option", "prefix=6",
                   "--batch-size", 4, "--progress-every", 0).stderr
    done = [int(m) for m in re.findall(r"(\d+)/40 rows \(\d+%\) \| [0-9.e+]+ rows/s \| ETA ", err)]
    assert done == sorted(done) and done[-1] == 40 and len(done) >= 5, err
    err = memsweep("eval", "--model", DEMO, "--task", f"multiple_choice:{DEMO / 'world_facts.jsonl'}", "--option", "context={{context}}",
                   "--option", "choices=choices", "--option", "label=label", "--progress-every", 0, "--batch-size", 4).stderr
    assert re.search(r"(\d+)/\1 requests \(100%\)", err), err
    assert all(re.match(STAMP, line) for line in err.splitlines() if line.strip()), err  # UTC, with its zone


@pytest.mark.parametrize("omp, taskset, expected", [("1", False, 1), ("3", False, 3), (None, True, 1)])
def test_every_model_command_chooses_its_threads_as_run_does(folder, omp, taskset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp:
        env["OMP_NUM_THREADS"] = omp
    prefix = []
    if taskset:
        if not shutil.which("taskset"):
            pytest.skip("no taskset here")
        prefix = ["taskset", "-c", "0"]  # one usable core, as a SLURM allocation of one CPU
    result = subprocess.run([*prefix, MEMSWEEP_BIN, "eval", "--model", folder / "model", "--task",
                             f"memorization:{folder / 'rows.jsonl'}", "--option", "prefix=6"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["intra_op_threads"] == expected
    tokens = write_tokens(folder / "prompt.json", [[1, 2, 3]])
    for command in (["generate", "--tokens", tokens, "--new-tokens", 2], ["forward", "--tokens", tokens, "--out", folder / "l.safetensors"],
                    ["select-memorized", "--input", folder / "rows.jsonl", "--prefix", 6, "--suffix", 6, "--out", folder / f"m{expected}.jsonl"]):
        (folder / f"m{expected}.jsonl.progress").unlink(missing_ok=True)
        (folder / f"m{expected}.jsonl").unlink(missing_ok=True)
        run = subprocess.run([*prefix, MEMSWEEP_BIN, command[0], "--model", folder / "model", *map(str, command[1:])],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0 and f" {expected} intra-op thread(s)" in run.stderr, (command[0], run.stderr)


def write_study(folder):
    study = folder / "study.toml"
    study.write_text(f'[[models]]\nname = "m"\npath = "{folder / "model"}"\n[[datasets]]\nname = "rows"\nkind = "memorization"\n'
                     f'path = "{folder / "rows.jsonl"}"\noptions = {{ prefix = 6 }}\n[interventions]\nsingle_blocks = true\n'
                     f'[run]\nunit_size = 8\n[store]\npath = "{folder / "study.sqlite"}"\n')
    for leftover in folder.glob("study.sqlite*"):
        leftover.unlink()
    return study


def test_run_logs_each_unit_and_a_single_process_names_its_running_unit(folder):
    err = memsweep("run", write_study(folder), "--progress-every", 0).stderr
    started = re.findall(r"unit (\d+) \((m\|rows\|\d+\+8\|[^)]*)\) attempt 1 started on rank \d+", err)
    finished = re.findall(r"unit (\d+) done in [0-9.]+ s on rank \d+", err)
    assert len(started) == len(finished) == 5 and {u for u, _ in started} == set(finished), err  # 5 shards, 5 interventions each
    assert re.search(r"units done, 0 failed, 1 running \| [^|]+\| ETA [^|]+\| running m\|rows\|", err), err
    assert all(re.match(STAMP, line) for line in err.splitlines() if line.strip()), err


def test_log_lines_never_overwrite_the_progress_bar_on_a_terminal(folder):
    main, child = pty.openpty()
    job = subprocess.Popen([MEMSWEEP_BIN, "run", str(write_study(folder))], stdin=child, stdout=child, stderr=child,
                           env=dict(os.environ, OMP_NUM_THREADS="1", TERM="xterm"))
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child side closed
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert job.wait(timeout=120) == 0
    text = output.decode(errors="replace").replace("\r\n", "\n")
    assert "[" in text and "units done" in text and "\x1b[K" in text  # the bar was drawn
    starts = [m.start() for m in re.finditer(STAMP, text)]
    assert len(starts) >= 10
    for at in starts:  # each log line begins a line: after a newline, or after the bar was cleared
        assert at == 0 or text[at - 1] == "\n" or text[max(0, at - 4):at] == "\r\x1b[K", repr(text[max(0, at - 80):at + 40])
