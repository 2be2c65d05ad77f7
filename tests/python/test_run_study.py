"""`memsweep run` end to end on tiny random models (GPT-NeoX and GPT-Neo, 4 blocks each) × every single block ×
two memorization sets: `mpirun -np 3` gives the results of a 1-rank run; plan and status report the grid and
the progress; a changed study file is refused unless --extend; a broken study stops every rank before work."""
import json
import os
import re
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from memsweep_testing import (MEMSWEEP_BIN, LoggedProcess, check_examples_stored_once, example_rows, make_gpt_neo, make_gpt_neox,
                              make_llama, run_memsweep, shared_file)

MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader,tcp",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")

STUDY = """
[run]
batch_size = {batch}
unit_size = 5
[interventions]
single_blocks = true
[[models]]
name = "neox"
path = "neox"
[[models]]
name = "neo"
path = "neo"
[[datasets]]
name = "set_a"
kind = "memorization"
path = "a.jsonl"
options = {{ prefix = 6 }}
[[datasets]]
name = "set_b"
kind = "memorization"
path = "b.jsonl"
options = {{ prefix = 4, suffix = 6 }}
models = ["neox"]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    make_gpt_neox(folder / "neox", seed=3)
    make_gpt_neo(folder / "neo", seed=4)
    generator = torch.Generator().manual_seed(5)
    for name, rows, length in (("a", 12, 14), ("b", 7, 10)):
        tokens = torch.randint(1, 97, (rows, length), generator=generator).tolist()
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"tokens": t}) + "\n" for t in tokens))
    return folder


def write_study(folder, name, batch=4, extra_run=""):
    path = folder / name
    path.write_text(STUDY.format(batch=batch).replace("unit_size = 5", "unit_size = 5\n" + extra_run))
    return path


def results(store):
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM units WHERE status != 'done'").fetchone() == (0,)
    return example_rows(store)


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for (key, name, index, values, facts, _), (key2, name2, index2, values2, facts2, _) in zip(a, b):
        assert (key, name, index) == (key2, name2, index2)
        assert facts.get("mismatch_token") == facts2.get("mismatch_token")  # where greedy decoding left the suffix, and with what
        assert values["exact_match"] == values2["exact_match"]
        for metric, value in values.items():
            assert value == pytest.approx(values2[metric], rel=1e-5, abs=1e-6), (key, name, index, metric)


def test_three_ranks_equal_one_rank_and_plan_and_status(folder):
    study = write_study(folder, "study.toml")
    plan = run_memsweep("plan", study, "--db", folder / "one.sqlite").stdout
    # neox: 5 interventions, set_a 12 rows -> 3 units, set_b 7 -> 2 units; neo: 5 interventions, set_a only.
    assert "neox                 set_a" in plan and "total" in plan
    assert "(not created yet)" in plan
    one = run_memsweep("run", study, "--db", folder / "one.sqlite")
    total_units = 3 + 2 + 3
    three = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study),
                            "--db", str(folder / "three.sqlite")], env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert three.returncode == 0, three.stderr
    assert_same(results(folder / "one.sqlite"), results(folder / "three.sqlite"))
    assert len(results(folder / "one.sqlite")) == 5 * (12 + 7) + 5 * 12
    status = run_memsweep("status", folder / "three.sqlite").stdout
    assert f"{'total':<20} {'':<20} {total_units:7d} {total_units:7d}" in status
    plan = run_memsweep("plan", study, "--db", folder / "three.sqlite").stdout
    total_line = next(line for line in plan.splitlines() if line.startswith(f"{'total':<20}"))
    assert total_line.split()[-1] == "0"  # nothing new: every unit is in the store
    # Rerunning a finished study does nothing and keeps every unit once.
    again = run_memsweep("run", study, "--db", folder / "one.sqlite")
    assert "8/8 units done" in again.stderr or "finished" in again.stderr
    assert len(results(folder / "one.sqlite")) == 5 * (12 + 7) + 5 * 12


def test_results_do_not_depend_on_batch_size_or_devices_per_worker(folder):
    run_memsweep("run", write_study(folder, "b2.toml", batch=2), "--db", folder / "b2.sqlite")
    run_memsweep("run", write_study(folder, "b5.toml", batch=5), "--db", folder / "b5.sqlite")
    assert_same(results(folder / "b2.sqlite"), results(folder / "b5.sqlite"))
    # A token budget of 20 allows one 14-token row (set_a) or two 10-token rows (set_b) per forward pass.
    run_memsweep("run", write_study(folder, "t20.toml", batch=5, extra_run="token_budget = 20"), "--db", folder / "t20.sqlite")
    assert_same(results(folder / "b2.sqlite"), results(folder / "t20.sqlite"))
    # Nor on splitting each model's layers over a worker's devices (here CPU placeholders).
    split = run_memsweep("run", write_study(folder, "d3.toml", batch=5, extra_run="devices_per_worker = 3"), "--db", folder / "d3.sqlite")
    assert "layers split over 3 devices" in split.stderr
    assert_same(results(folder / "b2.sqlite"), results(folder / "d3.sqlite"))


def test_changed_study_refused_unless_extend(folder):
    study = write_study(folder, "grow.toml")
    run_memsweep("run", study, "--db", folder / "grow.sqlite")
    study.write_text(study.read_text().replace("single_blocks = true", "single_blocks = true\nlast = [2]"))
    refused = run_memsweep("run", study, "--db", folder / "grow.sqlite", check=False)
    assert refused.returncode == 1 and "pass --extend" in refused.stderr
    run_memsweep("run", study, "--db", folder / "grow.sqlite", "--extend")
    names = {name for _, name, *_ in results(folder / "grow.sqlite")}
    assert "short_circuit:2-3" in names


@pytest.mark.parametrize("ranks", [1, 3])
def test_a_broken_study_stops_before_any_work(folder, ranks):
    study = folder / f"broken{ranks}.toml"
    study.write_text(STUDY.format(batch=4).replace("unit_size = 5", "unit_size = 5\nunit_sise = 3"))
    command = [MEMSWEEP_BIN, "run", str(study), "--db", str(folder / f"broken{ranks}.sqlite")]
    if ranks > 1:
        command = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *command]
    result = subprocess.run(command, env=MPI_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.count(f"{study}:5:1: unknown key 'run.unit_sise'") == 1, result.stderr
    assert not (folder / f"broken{ranks}.sqlite").exists()


DEMO = Path(__file__).resolve().parents[2] / "jobs" / "demo"


def test_demo_study_under_mpi_matches_eval_sweep(tmp_path):
    """The demo study (a model that really memorized its canaries) under 3 ranks: each dataset's metrics from the
    store's summed totals equal `memsweep eval --sweep` on the whole set."""
    store = tmp_path / "demo.sqlite"
    job = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run",
                          str(DEMO.parent / "demo.toml"), "--db", str(store)], env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT i.name, g.totals_json FROM aggregates g JOIN units u ON u.id = g.unit_id JOIN datasets d "
                          "ON d.id = u.dataset_id JOIN interventions i ON i.id = g.intervention_id WHERE d.name = 'canaries'")
        totals = {}
        for name, text in rows:
            for key, value in json.loads(text).items():
                totals.setdefault(name, {}).setdefault(key, 0.0)
                totals[name][key] += value
    sweep = json.loads(run_memsweep("eval", "--model", DEMO, "--task", f"memorization:{DEMO / 'canaries.jsonl'}", "--option",
                                    "prefix=16", "--batch-size", "16", "--sweep").stdout)["results"]
    assert len(sweep) == 7 and len(totals) == 8  # the study adds blocks 4-5 together
    for result in sweep:
        summed = totals[result["intervention"]]
        for metric, value in result["metrics"].items():
            if metric.endswith("_stderr"):  # not a total's mean: tests/python/test_statistics.py checks them
                continue
            expected = summed[metric] / summed["examples"] if metric != "examples" else summed["examples"]
            assert expected == pytest.approx(value, rel=1e-5, abs=1e-7), (result["intervention"], metric)
    status = run_memsweep("status", store, "--metrics").stdout
    assert "demo on canaries (memorization)" in status and "short_circuit:5" in status


def test_a_llama_study_under_mpi_matches_eval_sweep_and_reports(folder, tmp_path):
    """A study of a grouped-query Llama (4 query heads on 2 KV heads) under 3 ranks: each intervention's stored examples
    equal `memsweep eval --sweep` on the same rows, and `report` draws its tables and figures."""
    make_llama(tmp_path / "llama", seed=6)
    study = tmp_path / "llama.toml"
    study.write_text(f'[run]\nbatch_size = 4\nunit_size = 5\n[interventions]\nsingle_blocks = true\n[[models]]\nname = "llama"\n'
                     f'path = "{tmp_path / "llama"}"\n[[datasets]]\nname = "set_a"\nkind = "memorization"\n'
                     f'path = "{folder / "a.jsonl"}"\noptions = {{ prefix = 6 }}\n')
    store = tmp_path / "llama.sqlite"
    job = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study),
                          "--db", str(store)], env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    stored = {}
    for _, name, index, values, _, _ in results(store):
        stored.setdefault(name, {})[index] = values
    run_memsweep("eval", "--model", tmp_path / "llama", "--task", f"memorization:{folder / 'a.jsonl'}", "--option", "prefix=6",
                 "--batch-size", 4, "--sweep", "--out", tmp_path / "sweep.json")
    examples = {r["intervention"]: r["examples"] for r in json.loads((tmp_path / "sweep.json").read_text())["results"]}
    assert sorted(stored) == sorted(examples) and len(examples) == 5
    for name, rows in examples.items():
        assert len(rows) == len(stored[name]) == 12
        for row in rows:
            for metric, value in row["values"].items():
                assert stored[name][row["index"]][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, row["index"], metric)
    run_memsweep("report", store, "--out", tmp_path / "report")
    assert "llama" in (tmp_path / "report" / "report.md").read_text()


def test_example_studies_parse_up_to_their_placeholder_paths(tmp_path):
    plan = run_memsweep("plan", DEMO.parent / "demo.toml", "--db", tmp_path / "plan.sqlite").stdout
    assert "demo                 canaries" in plan
    studies = Path(__file__).resolve().parents[2] / "jobs" / "studies"
    for study in sorted(studies.glob("*.toml")):
        result = run_memsweep("plan", study, check=False)
        assert result.returncode == 1
        assert f"{study}:" in result.stderr and "/path/to/models/" in result.stderr and "does not exist" in result.stderr


def rank_pids(mpirun_pid):
    """{rank: pid} of the processes mpirun started on this host (read from their environment)."""
    ranks = {}
    children = subprocess.run(["pgrep", "-P", str(mpirun_pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                ranks[int(item.split(b"=", 1)[1])] = int(pid)
    return ranks


def unit_statuses(store):
    try:
        with sqlite3.connect(store) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # not created yet
        return {}


@pytest.mark.parametrize("victim", [1, 0])
def test_sigkill_mid_study_then_rerun_gives_every_unit_once(folder, victim):
    """A real `memsweep run` under mpirun -np 3 loses a worker (rank 1) or rank 0 to SIGKILL mid-study; the rerun
    completes it with every unit once and the results of an uninterrupted run."""
    import signal
    import time
    rows = torch.randint(1, 97, (60, 14), generator=torch.Generator().manual_seed(9)).tolist()
    (folder / "long.jsonl").write_text("".join(json.dumps({"tokens": t}) + "\n" for t in rows))
    study = folder / f"long{victim}.toml"
    study.write_text(STUDY.format(batch=1).replace("unit_size = 5", "unit_size = 2").replace('path = "a.jsonl"', 'path = "long.jsonl"'))
    reference = folder / f"long{victim}_reference.sqlite"
    run_memsweep("run", study, "--db", reference)
    store = folder / f"long{victim}.sqlite"
    job = LoggedProcess(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study), "--db",
                         str(store)], env=MPI_ENV)
    deadline = time.time() + 120
    while unit_statuses(store).get("done", 0) < 3:
        assert job.poll() is None, job.stdout.read()
        assert time.time() < deadline, "no unit finished"
        time.sleep(0.05)
    os.kill(rank_pids(job.pid)[victim], signal.SIGKILL)
    job.communicate(timeout=60)
    assert job.returncode != 0  # Open MPI ends the job when a rank dies
    interrupted = unit_statuses(store)
    total = sum(interrupted.values())
    assert interrupted.get("done", 0) < total, "the study ended before the kill: make it longer"
    again = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", MEMSWEEP_BIN, "run", str(study), "--db",
                            str(store)], env=MPI_ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert unit_statuses(store) == {"done": total}
    with sqlite3.connect(store) as db:  # one aggregate per unit and intervention, one row per example
        assert db.execute("SELECT COUNT(*) FROM (SELECT unit_id, intervention_id FROM aggregates GROUP BY 1, 2 HAVING COUNT(*) > 1)").fetchone() == (0,)
        check_examples_stored_once(db)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert_same(results(reference), results(store))


def test_plan_counts_parameters_like_transformers_and_refuses_what_does_not_fit(tmp_path):
    """plan's parameter count from config.json alone equals transformers' (models built on the meta device: no
    weights anywhere) for Pythia-12B, GPT-Neo-1.3B, Llama-3-8B, Llama-3.2-1B and OLMo-2-1B shapes; with --device-memory 40 (GB) Pythia-12B in float32
    (~47 GB of weights) is refused with a message naming it and the devices per worker it needs (2); in bfloat16 it
    fits one device, and in float32 split over two (devices_per_worker = 2)."""
    from transformers import AutoConfig, AutoModelForCausalLM, GPTNeoConfig, GPTNeoXConfig, LlamaConfig, Olmo2Config
    configs = {
        "pythia12b": GPTNeoXConfig(vocab_size=50688, hidden_size=5120, num_hidden_layers=36, num_attention_heads=40,
                                   intermediate_size=20480, max_position_embeddings=2048, rotary_pct=0.25),
        "neo13b": GPTNeoConfig(vocab_size=50257, hidden_size=2048, num_layers=24, num_heads=16, max_position_embeddings=2048,
                               attention_types=[[["global", "local"], 12]]),
        # Grouped-query (8 KV heads for 32), tied (Llama 3.2 1B), q/k norms (OLMo 2 1B).
        "llama3_8b": LlamaConfig(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                 num_key_value_heads=8, intermediate_size=14336, max_position_embeddings=8192),
        "llama32_1b": LlamaConfig(vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                  num_key_value_heads=8, intermediate_size=8192, tie_word_embeddings=True, head_dim=64),
        "olmo2_1b": Olmo2Config(vocab_size=100352, hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                                num_key_value_heads=16, intermediate_size=8192),
    }
    expected = {}
    for name, config in configs.items():
        config.save_pretrained(tmp_path / name)
        placeholder_weights(tmp_path / name)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path / name))
        expected[name] = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    (tmp_path / "rows.jsonl").write_text(json.dumps({"tokens": list(range(1, 70))}) + "\n")
    study_text = "[run]\nbatch_size = 8\n[interventions]\nsingle_blocks = true\n" + "".join(
        f'[[models]]\nname = "{name}"\npath = "{name}"\ndtype = "{{dtype}}"\n' for name in configs) + \
        '[[datasets]]\nname = "rows"\nkind = "memorization"\npath = "rows.jsonl"\n'
    for dtype, devices, fits in (("float32", 1, False), ("bfloat16", 1, True), ("float32", 2, True)):
        study = tmp_path / f"{dtype}{devices}.toml"
        study.write_text(study_text.replace("{dtype}", dtype).replace("[run]\n", f"[run]\ndevices_per_worker = {devices}\n"))
        result = run_memsweep("plan", study, "--db", tmp_path / f"{dtype}.sqlite", "--device-memory", "40", check=False)
        table = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()[:1] in ([n] for n in configs)}
        for name in configs:
            assert int(table[name][2]) == expected[name], (name, table[name], expected[name])
            assert int(table[name][3]) == devices
        assert table["pythia12b"][5] == "GB"  # sizes as people write them: "47.4 GB"
        weights_gb = float(table["pythia12b"][4])
        full = expected["pythia12b"] * (4 if dtype == "float32" else 2) / 1e9
        if devices == 1:
            assert weights_gb == pytest.approx(full, rel=1.1e-3)  # three significant digits
        else:  # the fuller of two balanced halves: at most one layer more than half
            assert full / 2 - 0.06 <= weights_gb <= full / 2 + 12 * 5120**2 * 4 / 1e9 + 0.06
        # float32 Pythia-12B (~47 GB) needs two 40-GB devices, bfloat16 one.
        assert table["pythia12b"][-1] == ("(2)" if dtype == "float32" else "(1)"), result.stdout
        if fits:
            assert result.returncode == 0, result.stderr
            assert table["pythia12b"][-2] == "yes"
        else:
            assert result.returncode == 1 and table["pythia12b"][-2] == "NO"
            assert "model 'pythia12b'" in result.stderr and "more than the 40" in result.stderr
            assert "set [run] devices_per_worker = 2" in result.stderr


def placeholder_weights(model_dir, parameters=4):
    """A structurally valid model.safetensors of `parameters` float32 values, sparse (nothing written past the header):
    what plan checks of weights, at any size."""
    header = json.dumps({"weights": {"dtype": "F32", "shape": [parameters], "data_offsets": [0, 4 * parameters]}}).encode()
    header += b" " * (-len(header) % 8)
    path = Path(model_dir) / "model.safetensors"
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * parameters)
    return path


def paper_inputs(tmp_path):
    """The inputs jobs/studies/*.toml name, under tmp_path as under /path/to/: the five models' real config.json files
    (tests/data/configs) with their real tokenizers, 64-token memorized and control rows, every benchmark's file
    (../shared/data's PIQA and ARC-Easy, tests/data/benchmarks' hand-written rows) and a text divergence set."""
    root = Path(__file__).resolve().parents[2]
    neox_tokenizer = shared_file("tokenizers/gpt-neox-20b/tokenizer.json")
    gpt2 = shared_file("tokenizers/gpt2/vocab.json").parent
    data = tmp_path / "data"
    for name in ("pythia-1.4b", "pythia-2.8b", "pythia-6.9b", "pythia-12b", "gpt-neo-1.3b"):
        model = tmp_path / "models" / name
        model.mkdir(parents=True)
        (model / "config.json").write_text((root / "tests" / "data" / "configs" / name / "config.json").read_text())
        placeholder_weights(model, 11846072320 if name == "pythia-12b" else 4)  # 12B: a 47 GB sparse file
        if name.startswith("pythia"):
            (model / "tokenizer.json").write_text(neox_tokenizer.read_text())
        else:  # GPT-Neo's Hub folder has the GPT-2 layout
            for file in ("vocab.json", "merges.txt"):
                (model / file).write_text((gpt2 / file).read_text())
        rows = np.random.default_rng(0).integers(1, 50000, size=(100, 64))
        for folder in ("memorized", "control"):
            (data / folder).mkdir(parents=True, exist_ok=True)
            (data / folder / f"{name}.jsonl").write_text("".join(json.dumps({"tokens": r.tolist()}) + "\n" for r in rows))
    benchmarks = data / "benchmarks"
    benchmarks.mkdir()
    (benchmarks / "piqa.jsonl").write_text(shared_file("piqa/validation.jsonl").read_text())
    (benchmarks / "arc_easy.jsonl").write_text(shared_file("arc-easy/test.jsonl").read_text())
    for kind in ("arc_challenge", "hellaswag", "winogrande", "sciq", "openbookqa", "boolq"):
        (benchmarks / f"{kind}.jsonl").write_text((root / "tests" / "data" / "benchmarks" / f"{kind}.jsonl").read_text())
    (benchmarks / "lambada_openai.jsonl").write_text((root / "tests" / "data" / "benchmarks" / "lambada.jsonl").read_text())
    sentence = "The committee reviewed the proposal and asked for a revised budget before the next meeting in spring."
    (data / "divergence.jsonl").write_text("".join(json.dumps({"text": " ".join([sentence] * (1 + i % 3))}) + "\n"
                                                   for i in range(40)))
    (tmp_path / "results").mkdir()


def test_plan_sizes_the_paper_grid_from_its_real_inputs(tmp_path):
    """jobs/studies/paper_grid.toml, the paper's whole study, on its inputs' real shapes (paper_inputs): plan passes, every
    model fits an 80 GB device in float32 with the interventions its comments count, every dataset the file names has
    its role, and the largest batch plan sizes is read off the datasets, not the models' 2048 positions."""
    root = Path(__file__).resolve().parents[2]
    paper_inputs(tmp_path)
    study = tmp_path / "paper_grid.toml"
    study.write_text((root / "jobs" / "studies" / "paper_grid.toml").read_text().replace("/path/to/", f"{tmp_path}/"))
    began = time.monotonic()
    result = run_memsweep("plan", study, "--device-memory", "80", check=False)
    seconds = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"plan with its weights checked (pythia-12b: a 47 GB sparse safetensors file) in {seconds:.2f} s")
    memory = {line.split()[0]: line for line in result.stdout.splitlines() if line.endswith(("yes (1)", "NO (2)"))}
    assert sorted(memory) == ["gpt-neo-1.3b", "pythia-1.4b", "pythia-12b", "pythia-2.8b", "pythia-6.9b"], result.stdout
    assert all(line.endswith("yes (1)") for line in memory.values()), result.stdout
    print("\n" + "\n".join(memory.values()))
    assert "x 63 " in memory["pythia-12b"] or "divergence:" in memory["pythia-12b"]  # 64-token rows: 63 fed per pass
    assert "interventions per model:" in result.stdout and "short_circuit:35" in result.stdout
    for model, count in (("pythia-1.4b", 25), ("pythia-2.8b", 33), ("pythia-6.9b", 33), ("pythia-12b", 37), ("gpt-neo-1.3b", 25)):
        assert f"  {model} ({count}):" in result.stdout, (model, result.stdout)
    assert not (tmp_path / "results" / "paper_grid.sqlite").exists()  # plan writes nothing
    grid = tomllib.loads(study.read_text())
    roles = {d["name"]: d["role"] for d in grid["datasets"]}
    assert sorted(set(roles.values())) == ["benchmark", "control", "divergence", "memorized"]
    assert {d["kind"] for d in grid["datasets"] if d["role"] == "benchmark"} == {
        "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "sciq", "openbookqa", "boolq", "lambada_openai"}
    assert all(m["dtype"] == "float32" for m in grid["models"])
    forty = run_memsweep("plan", study, "--device-memory", "40", check=False)  # the comment: 12B needs two 40 GB GPUs
    assert re.search(r"pythia-12b .*NO \(2\)", forty.stdout), forty.stdout


def test_plan_passes_on_the_ablation_study(tmp_path):
    root = Path(__file__).resolve().parents[2]
    paper_inputs(tmp_path)
    study = tmp_path / "pythia_12b_ablations.toml"
    study.write_text((root / "jobs" / "studies" / "pythia_12b_ablations.toml").read_text().replace("/path/to/", f"{tmp_path}/"))
    result = run_memsweep("plan", study, "--device-memory", "40", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"pythia-12b .*yes \(1\)", result.stdout), result.stdout  # bfloat16: 24 GB fits 40 GB
    print(result.stdout)


def test_plan_calibrate_prints_minutes_per_unit_and_the_drain_verdict(folder):
    study = write_study(folder, "calibrate.toml")
    plan = run_memsweep("plan", study, "--db", folder / "calibrate.sqlite", "--calibrate", "--calibrate-examples", "2",
                        "--grace", "0.000001").stdout
    lines = [line for line in plan.splitlines() if line.startswith(("neox ", "neo "))]
    assert "calibration on cpu" in plan
    calibrated = [line for line in lines if line.endswith("fit")]
    assert len(calibrated) == 3, plan  # neox x (set_a, set_b), neo x set_a
    assert all(line.endswith("does NOT fit") for line in calibrated), plan  # no unit runs in a microsecond
    hours = next(line for line in plan.splitlines() if line.startswith("the whole study:"))
    total, left = (float(x) for x in re.search(r"study: ([0-9.e+-]+) device-hours on cpu \(([0-9.e+-]+) left", hours).groups())
    assert 0 < left <= total, hours  # nothing is done yet: all of it is left
    assert not (folder / "calibrate.sqlite").exists()  # plan writes nothing


def test_study_md_lists_every_dataset_kind(tmp_path):
    """schemas/study.md's table of dataset kinds names exactly the kinds memsweep knows (its error for an unknown one
    lists them)."""
    make_gpt_neox(tmp_path / "model")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"tokens": [1, 2, 3]}) + "\n")
    result = run_memsweep("eval", "--model", tmp_path / "model", "--task", f"no_such_kind:{rows}", check=False)
    known = re.search(r"unknown kind 'no_such_kind' \(known: ([^)]*)\)", result.stderr)
    assert known, result.stderr
    text = (Path(__file__).resolve().parents[2] / "schemas" / "study.md").read_text()
    table = text[text.index("### Dataset kinds and their options"):text.index("## `[interventions]`")]
    documented = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert documented == set(known.group(1).split(", ")), (documented, known.group(1))


@pytest.mark.parametrize("damage", ["git-lfs pointer", "truncated safetensors", "missing shard", "truncated .bin"])
def test_broken_weights_are_refused_before_any_work(tmp_path, damage):
    """plan, submit (before sbatch) and run check every model's weights structurally without libtorch: the error names
    the file, nothing is queued and no store is made."""
    model = tmp_path / "model"
    make_gpt_neox(model, shard_size="20KB" if damage == "missing shard" else None)
    if damage == "git-lfs pointer":
        broken = model / "model.safetensors"
        broken.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234567\n")
        expected = f"{broken} is a git-lfs pointer file"
    elif damage == "truncated safetensors":
        broken = model / "model.safetensors"
        broken.write_bytes(broken.read_bytes()[:-100])
        expected = str(broken)
    elif damage == "missing shard":
        broken = sorted(model.glob("model-*.safetensors"))[-1]
        broken.unlink()
        expected = f"shard {broken} is missing"
    else:
        from safetensors.torch import load_file
        state = load_file(model / "model.safetensors")
        (model / "model.safetensors").unlink()
        broken = model / "pytorch_model.bin"
        torch.save(state, broken)
        broken.write_bytes(broken.read_bytes()[:-200])
        expected = str(broken)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"tokens": list(range(1, 13))}) + "\n")
    study = tmp_path / "study.toml"
    study.write_text(f'[[models]]\nname = "m"\npath = "model"\n[[datasets]]\nname = "d"\nkind = "memorization"\npath = "rows.jsonl"\n'
                     f'options = {{ prefix = 6 }}\n[store]\npath = "results/s.sqlite"\n')
    for command in (["plan", study], ["submit", study, "--nodes", 1, "--time", "1:00:00", "--dry-run"], ["run", study]):
        result = run_memsweep(*command, check=False)
        assert result.returncode == 1 and expected in result.stderr and "model 'm'" in result.stderr, (command, result.stderr)
        assert "#SBATCH" not in result.stdout
    assert not (tmp_path / "results").exists()
