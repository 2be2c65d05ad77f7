"""select-memorized on corpora too large to hold: parts of a shard (--part K/N) give, concatenated, what one run over
the whole file gives (raw streams, .npy and JSONL), a run killed with SIGKILL resumes to the same output with no
window twice, and malformed streams are clear errors naming the file."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from memsweep_testing import MEMSWEEP_BIN, make_gpt_neox, run_memsweep, write_tokens

PREFIX, SUFFIX = 6, 6
WINDOW = PREFIX + SUFFIX


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny model and a stream of 90 windows, every third its own greedy continuation (memorized by construction)."""
    folder = tmp_path_factory.mktemp("mining")
    make_gpt_neox(folder / "model", seed=8)
    generator = torch.Generator().manual_seed(9)
    prefixes = torch.randint(1, 97, (90, PREFIX), generator=generator).tolist()
    continuations = json.loads(run_memsweep("generate", "--model", folder / "model", "--tokens",
                                            write_tokens(folder / "p.json", prefixes), "--new-tokens", SUFFIX, "--no-eos").stdout)
    stream = []
    for i, (prefix, continuation) in enumerate(zip(prefixes, continuations)):
        stream += prefix + (continuation if i % 3 == 0 else torch.randint(1, 97, (SUFFIX,), generator=generator).tolist())
    np.array(stream, dtype="<u2").tofile(folder / "shard.u16")
    rows = np.array(stream).reshape(30, 3 * WINDOW)  # the same tokens as 30 rows of three windows
    np.save(folder / "rows.npy", rows.astype(np.int32))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"tokens": row.tolist()}) + "\n" for row in rows))
    return folder, stream


def mine(folder, corpus_file, out, *more):
    return json.loads(run_memsweep("select-memorized", "--model", folder / "model", "--input", folder / corpus_file, "--prefix", PREFIX,
                                   "--suffix", SUFFIX, "--out", out, "--batch-size", 4, *more).stdout)


@pytest.mark.parametrize("corpus_file", ["shard.u16", "rows.npy", "rows.jsonl"])
def test_parts_concatenated_equal_the_whole(corpus, tmp_path, corpus_file):
    folder, stream = corpus
    whole = mine(folder, corpus_file, tmp_path / "whole.jsonl")
    lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    assert whole["windows"] == 90 and whole["kept"] == len(lines) >= 30  # at least the planted third
    for line in lines:
        window = json.loads(line)
        start = window["offset"] + (window["row"] * 3 * WINDOW if window["row"] >= 0 else 0)
        if corpus_file.endswith(".jsonl"):  # JSONL rows are numbered by line, from 1
            start = window["offset"] + (window["row"] - 1) * 3 * WINDOW
        assert window["tokens"] == stream[start:start + WINDOW]
    parts = []
    for k in (1, 2, 3):
        summary = mine(folder, corpus_file, tmp_path / f"part{k}.jsonl", "--part", f"{k}/3")
        assert summary["windows"] == 30 and summary["first_window"] == 30 * (k - 1)
        parts += (tmp_path / f"part{k}.jsonl").read_text().splitlines()
    assert parts == lines
    print(f"{corpus_file}: {len(lines)} of 90 windows kept; parts 1-3 of 3 give the same lines")


def test_a_killed_run_resumes_without_duplicates(corpus, tmp_path):
    folder, stream = corpus
    big = tmp_path / "big.u16"
    np.array(stream * 40, dtype="<u2").tofile(big)  # 3,600 windows
    reference = tmp_path / "reference.jsonl"
    run_memsweep("select-memorized", "--model", folder / "model", "--input", big, "--prefix", PREFIX, "--suffix", SUFFIX, "--out",
                 reference, "--batch-size", 4)
    out = tmp_path / "resumed.jsonl"
    command = [MEMSWEEP_BIN, "select-memorized", "--model", str(folder / "model"), "--input", str(big), "--prefix", str(PREFIX),
               "--suffix", str(SUFFIX), "--out", str(out), "--batch-size", "4"]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    progress = tmp_path / "resumed.jsonl.progress"
    examined, deadline = 0, time.monotonic() + 120
    while examined < 400 and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            examined = json.loads(progress.read_text())["examined"]
        except (OSError, ValueError, KeyError):
            pass
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert 400 <= examined < 3600 and not out.exists(), examined  # killed in the middle
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert out.read_text() == reference.read_text()
    offsets = [json.loads(line)["offset"] for line in out.read_text().splitlines()]
    assert len(offsets) == len(set(offsets)) == 1200  # every planted window once
    assert json.loads(progress.read_text())["complete"] and not (tmp_path / "resumed.jsonl.partial").exists()
    before = out.stat().st_mtime_ns
    again = run_memsweep("select-memorized", *command[2:])  # a requeued job that had finished: nothing to do
    assert "nothing to do" in again.stderr and json.loads(again.stdout)["kept"] == 1200 and out.stat().st_mtime_ns == before


def test_malformed_streams_and_a_changed_command(corpus, tmp_path):
    folder, _ = corpus
    odd = tmp_path / "odd.u16"
    odd.write_bytes(b"\x01\x00\x02\x00\x03")
    result = run_memsweep("select-memorized", "--model", folder / "model", "--input", odd, "--out", tmp_path / "o.jsonl", check=False)
    assert result.returncode != 0 and f"{odd}: 5 bytes is not a whole number of uint16 tokens" in result.stderr, result.stderr
    beyond = tmp_path / "beyond.u16"
    np.array([5] * 20 + [500] + [5] * 20, dtype="<u2").tofile(beyond)  # the model has 97 ids
    result = run_memsweep("select-memorized", "--model", folder / "model", "--input", beyond, "--prefix", 4, "--suffix", 4,
                          "--out", tmp_path / "b.jsonl", check=False)
    assert result.returncode != 0 and f"{beyond}: token 20: token id 500 is outside the model's vocabulary (0 to 96)" in result.stderr
    # A progress file of another command is not resumed.
    out = tmp_path / "c.jsonl"
    (tmp_path / "c.jsonl.progress").write_text(json.dumps({"run": {"input": "elsewhere"}, "examined": 3, "kept": 0, "bytes": 0}))
    result = run_memsweep("select-memorized", "--model", folder / "model", "--input", folder / "shard.u16", "--out", out, check=False)
    assert result.returncode != 0 and "records another run" in result.stderr


def test_a_control_set_is_the_complement(corpus, tmp_path):
    """--keep not-memorized keeps exactly the windows the memorized run leaves out (a control set of the same shape and
    source), and eval on it finds EM 0 on every row; --limit caps the windows examined."""
    folder, stream = corpus
    memorized = mine(folder, "shard.u16", tmp_path / "memorized.jsonl")
    control = mine(folder, "shard.u16", tmp_path / "control.jsonl", "--keep", "not-memorized")
    offsets = lambda name: [json.loads(line)["offset"] for line in (tmp_path / name).read_text().splitlines()]
    assert memorized["kept"] + control["kept"] == 90 and control["kept"] > 0
    assert sorted(offsets("memorized.jsonl") + offsets("control.jsonl")) == [i * WINDOW for i in range(90)]
    scored = json.loads(run_memsweep("eval", "--model", folder / "model", "--task", f"memorization:{tmp_path / 'control.jsonl'}",
                                     "--option", f"prefix={PREFIX}").stdout)
    metrics = scored["results"][0]["metrics"]
    assert metrics["examples"] == control["kept"] and metrics["exact_match"] == 0.0, metrics
    limited = mine(folder, "shard.u16", tmp_path / "limited.jsonl", "--keep", "not-memorized", "--limit", 12)
    assert limited["windows"] == 12 and offsets("limited.jsonl") == [o for o in offsets("control.jsonl") if o < 12 * WINDOW]
    result = run_memsweep("select-memorized", "--model", folder / "model", "--input", folder / "shard.u16", "--out",
                          tmp_path / "x.jsonl", "--keep", "controls", check=False)
    assert result.returncode != 0 and "--keep 'controls' is not memorized or not-memorized" in result.stderr
    print(f"memorized {memorized['kept']} + control {control['kept']} = 90 windows; control EM {metrics['exact_match']}")
