"""The README's recipe, "Reproducing the paper", end to end on small inputs it writes itself: Parquet files laid out as
`hf download` leaves them (a memorized-evals split in two files, two benchmarks, LAMBADA's text), a token shard, and
the demo model standing in for a Pythia checkpoint. The same commands in the same order as the README: convert ->
control set -> study -> plan -> submit --dry-run -> run -> status -> report."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from memsweep_testing import run_memsweep

ROOT = Path(__file__).resolve().parents[2]
CONVERT = ROOT / "jobs" / "convert_hub.py"


def convert(*args):
    result = subprocess.run([sys.executable, str(CONVERT), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_the_readme_recipe_from_downloads_to_figures(tmp_path):
    # What `hf download` leaves: a checkpoint folder, the memorized-evals split in numbered files beside another
    # model's split, the benchmarks' and LAMBADA's Parquet files in their configurations' folders.
    shutil.copytree(ROOT / "jobs" / "demo", tmp_path / "models" / "pythia-demo",
                    ignore=shutil.ignore_patterns("*.jsonl", "*.py", "*.md"))
    hub = tmp_path / "hub"
    canaries = [json.loads(line)["tokens"] for line in (ROOT / "jobs" / "demo" / "canaries.jsonl").read_text().splitlines()]
    rows = [{"index": 2049 * i, "tokens": tokens[:32], "__index_level_0__": 2049 * i} for i, tokens in enumerate(canaries)]
    half = len(rows) // 2
    parquet(hub / "pythia-memorized-evals" / "data" / "duped.demo-00000-of-00002.parquet", rows[:half])
    parquet(hub / "pythia-memorized-evals" / "data" / "duped.demo-00001-of-00002.parquet", rows[half:])
    parquet(hub / "pythia-memorized-evals" / "data" / "deduped.demo-00000-of-00001.parquet", rows[:3])
    benchmarks = ROOT / "tests" / "data" / "benchmarks"
    read = lambda name: [json.loads(line) for line in (benchmarks / name).read_text().splitlines()]
    parquet(hub / "ai2_arc" / "ARC-Challenge" / "test-00000-of-00001.parquet", read("arc_challenge.jsonl"))
    parquet(hub / "ai2_arc" / "ARC-Challenge" / "train-00000-of-00001.parquet", read("arc_challenge.jsonl")[:1])
    parquet(hub / "hellaswag" / "data" / "validation-00000-of-00001.parquet", read("hellaswag.jsonl"))
    held_out = [{"text": json.loads(line)["text"]} for line in (ROOT / "jobs" / "demo" / "divergence.jsonl").read_text().splitlines()]
    parquet(hub / "lambada_openai" / "default" / "test-00000-of-00001.parquet", held_out)  # short: the demo has 128 positions
    # A pre-tokenized shard: the canaries' windows between windows of random ids the model never saw.
    generator = np.random.default_rng(3)
    stream = []
    for tokens in canaries[:10]:
        stream += tokens[:32] + generator.integers(1, 2047, size=32).tolist()
    np.array(stream, dtype="<u2").tofile(tmp_path / "document-00000.bin")  # raw uint16, as the Pile shards

    # 2. Convert.
    data = tmp_path / "data"
    printed = convert("memorized", hub / "pythia-memorized-evals", "--split", "duped.demo", "--out", data / "memorized" / "pythia-demo.jsonl")
    assert f"{len(rows)} rows from 2 file(s)" in printed
    convert("arc_challenge", hub / "ai2_arc", "--out", data / "benchmarks" / "arc_challenge.jsonl")
    convert("hellaswag", hub / "hellaswag", "--out", data / "benchmarks" / "hellaswag.jsonl")
    convert("text", hub / "lambada_openai", "--split", "test", "--out", data / "divergence.jsonl")
    provenance = json.loads((data / "memorized" / "pythia-demo.jsonl.provenance.json").read_text())
    assert [Path(s["path"]).name for s in provenance["sources"]] == ["duped.demo-00000-of-00002.parquet",
                                                                      "duped.demo-00001-of-00002.parquet"]

    # 3. A control set: windows of the shard the model does not reproduce.
    control = data / "control" / "pythia-demo.jsonl"
    control.parent.mkdir(parents=True)
    summary = json.loads(run_memsweep("select-memorized", "--model", tmp_path / "models" / "pythia-demo", "--input",
                                      tmp_path / "document-00000.bin", "--format", "uint16", "--prefix", 16, "--suffix", 16, "--keep", "not-memorized",
                                      "--limit", 20, "--out", control).stdout)
    assert summary["windows"] == 20 and 10 <= summary["kept"] < 20  # the random windows, not the memorized canaries

    # 4. The study: paper_grid.toml's shape for one model.
    study = tmp_path / "study.toml"
    study.write_text(f'''[study]
name = "recipe"

[[models]]
name = "pythia-demo"
path = "models/pythia-demo"
dtype = "float32"

[[datasets]]
name = "memorized-pythia-demo"
kind = "memorization"
role = "memorized"
path = "data/memorized/pythia-demo.jsonl"
options = {{ prefix = 16, suffix = 16 }}
models = ["pythia-demo"]

[[datasets]]
name = "control-pythia-demo"
kind = "memorization"
role = "control"
path = "data/control/pythia-demo.jsonl"
options = {{ prefix = 16, suffix = 16 }}
models = ["pythia-demo"]

[[datasets]]
name = "arc_challenge"
kind = "arc_challenge"
role = "benchmark"
path = "data/benchmarks/arc_challenge.jsonl"
options = {{ tag = "reasoning" }}

[[datasets]]
name = "hellaswag"
kind = "hellaswag"
role = "benchmark"
path = "data/benchmarks/hellaswag.jsonl"
options = {{ tag = "language" }}

[[datasets]]
name = "divergence"
kind = "divergence"
role = "divergence"
path = "data/divergence.jsonl"

[interventions]
baseline = true
single_blocks = true

[run]
batch_size = 8
token_budget = 1024

[store]
path = "results/recipe.sqlite"
''')
    # 5. plan, then submit (--dry-run: no SLURM here; ctest -L cluster submits for real).
    plan = run_memsweep("plan", study, "--device-memory", "80").stdout
    assert "pythia-demo (7):" in plan and "yes (1)" in plan
    script = run_memsweep("submit", study, "--nodes", 1, "--gpus-per-node", 2, "--time", "02:00:00", "--partition", "gpu",
                          "--dry-run").stdout
    assert "#SBATCH" in script and "memsweep" in script and "run" in script
    # 6. run (what the submitted job runs), status, report.
    run_memsweep("run", study)
    store = tmp_path / "results" / "recipe.sqlite"
    status = run_memsweep("status", store, "--metrics").stdout
    assert "100.0%" in status or "done" in status, status
    report = run_memsweep("report", store, "--out", tmp_path / "report")
    folder = tmp_path / "report"
    for figure in ("fig1_memorization_pythia-demo", "fig4_em_vs_accuracy", "fig6_divergence_pythia-demo_divergence"):
        assert (folder / f"{figure}.svg").exists() and (folder / f"{figure}.png").exists(), figure
    text = (folder / "report.md").read_text()
    assert "Memorized set: `memorized-pythia-demo`" in text and "`control-pythia-demo` (control)" in text
    # The memorized set is memorized and the control set is not: the numbers the report's tables start from.
    baseline_em = {line.split(",")[1]: float(line.split(",")[9]) for line in (folder / "metrics.csv").read_text().splitlines()
                   if ",baseline," in line and ",exact_match," in line}
    assert baseline_em["memorized-pythia-demo"] > 0.5 and baseline_em["control-pythia-demo"] == 0.0, baseline_em
    print("\n" + report.stdout + "\n" + "\n".join(status.splitlines()[:9]))
