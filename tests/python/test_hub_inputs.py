"""jobs/convert_hub.py: Parquet files laid out as `hf download --repo-type dataset` leaves them become the JSONL memsweep
reads. Rows equal what Hugging Face `datasets` reads from the same files; a split in several files keeps its order; a
wrong schema is an error naming the file and column, with nothing written; the harness task each benchmark kind
stands for names the repository, configuration and split the converter defaults to (read from the installed
lm-evaluation-harness's own YAML files)."""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memsweep_testing import shared_file

ROOT = Path(__file__).resolve().parents[2]
CONVERT = ROOT / "jobs" / "convert_hub.py"
sys.path.insert(0, str(ROOT / "jobs"))
import convert_hub  # noqa: E402

BENCHMARK_DATA = ROOT / "tests" / "data" / "benchmarks"
# kind -> (rows, the folder under the download where the Hub keeps that configuration's files)
HAND_WRITTEN = {"arc_challenge": ("arc_challenge.jsonl", "ARC-Challenge"), "boolq": ("boolq.jsonl", "boolq"),
                "hellaswag": ("hellaswag.jsonl", "data"), "lambada_openai": ("lambada.jsonl", "default"),
                "openbookqa": ("openbookqa.jsonl", "main"), "sciq": ("sciq.jsonl", "data"),
                "winogrande": ("winogrande.jsonl", "winogrande_xl")}


def convert(*args, check=True):
    result = subprocess.run([sys.executable, str(CONVERT), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def datasets_rows(files, cache):
    """The reference: Hugging Face datasets reading the same Parquet files."""
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_parquet([str(f) for f in files], keep_in_memory=True, cache_dir=str(cache))
    return [dict(row) for row in table]


def rows_of(kind):
    if kind == "piqa":
        return [json.loads(line) for line in shared_file("piqa/validation.jsonl").read_text().splitlines()[:200]]
    if kind == "arc_easy":
        return [json.loads(line) for line in shared_file("arc-easy/test.jsonl").read_text().splitlines()[:200]]
    return read_jsonl(BENCHMARK_DATA / HAND_WRITTEN[kind][0])


@pytest.mark.parametrize("kind", ["piqa", "arc_easy", *HAND_WRITTEN])
def test_each_benchmark_converts_to_the_rows_datasets_reads(tmp_path, kind):
    rows = rows_of(kind)
    spec = convert_hub.KINDS[kind]
    hub = tmp_path / "hub"
    folder = HAND_WRITTEN[kind][1] if kind in HAND_WRITTEN else {"piqa": "data", "arc_easy": "ARC-Easy"}[kind]
    evaluated = hub / folder / f"{spec['split']}-00000-of-00001.parquet"
    write_parquet(evaluated, rows)
    write_parquet(hub / folder / "train-00000-of-00001.parquet", rows[:3])  # other splits are left alone
    if folder.startswith("ARC-"):  # the other configuration holds a split of the same name
        write_parquet(hub / ("ARC-Easy" if folder == "ARC-Challenge" else "ARC-Challenge") / "test-00000-of-00001.parquet", rows[:2])
    out = tmp_path / f"{kind}.jsonl"
    printed = convert(kind, hub, "--out", out).stdout
    converted = read_jsonl(out)
    assert converted == rows == datasets_rows([evaluated], tmp_path / 'cache'), kind
    provenance = json.loads(Path(f"{out}.provenance.json").read_text())
    assert [Path(s["path"]).name for s in provenance["sources"]] == [evaluated.name]
    assert provenance["sources"][0]["sha256"] == convert_hub.sha256_of(evaluated) and provenance["rows"] == len(rows)
    assert provenance["hub_repository"] == spec["repo"] and provenance["split"] == spec["split"]
    assert f"{len(rows)} rows" in printed
    print(f"{kind}: {len(rows)} rows from {folder}/{evaluated.name}, equal to datasets' reading")


def test_the_defaults_are_what_the_installed_harness_evaluates():
    """Each benchmark kind's repository, configuration and split as lm-evaluation-harness's task YAML names them (the
    split it evaluates: test_split, else validation_split)."""
    lm_eval = pytest.importorskip("lm_eval")
    yaml = pytest.importorskip("yaml")
    tasks = Path(lm_eval.__file__).parent / "tasks"

    def load(path):
        class Loader(yaml.SafeLoader):
            pass
        Loader.add_multi_constructor("!function", lambda loader, suffix, node: None)
        config = yaml.load(path.read_text(), Loader=Loader)
        if "include" in config:
            base = load(path.parent / config.pop("include"))
            base.update(config)
            config = base
        return config

    files = {"piqa": "piqa/piqa.yaml", "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml",
             "hellaswag": "hellaswag/hellaswag.yaml", "winogrande": "winogrande/default.yaml", "sciq": "sciq/sciq.yaml",
             "openbookqa": "openbookqa/openbookqa.yaml", "boolq": "super_glue/boolq/default.yaml",
             "lambada_openai": "lambada/lambada_openai.yaml"}
    by_task = {task: load(tasks / file) for task, file in files.items()}
    assert all(config["task"] == task for task, config in by_task.items())
    checked = []
    for kind, spec in convert_hub.KINDS.items():
        if spec["task"] is None:
            continue
        config = by_task[spec["task"]]
        split = config.get("test_split") or config.get("validation_split")
        assert (spec["repo"], spec["config"], spec["split"]) == (config["dataset_path"], config.get("dataset_name"), split), kind
        checked.append(f"{kind}={spec['repo']}/{spec['config']}:{split}")
    assert len(checked) == 9
    print("\n" + ", ".join(checked))


def test_a_memorized_split_in_several_files(tmp_path):
    """pythia-memorized-evals keeps a split in numbered files beside the other models' splits: the right ones, in order,
    every row's index kept; a folder of one split's files needs no --split."""
    data = tmp_path / "pythia-memorized-evals" / "data"
    expected = []
    for shard in range(3):
        rows = [{"index": 1000 * shard + i, "tokens": [(shard * 7 + i + t) % 50000 for t in range(64)],
                 "__index_level_0__": 1000 * shard + i} for i in range(25)]
        expected += rows
        write_parquet(data / f"duped.1.4b-{shard:05d}-of-00003.parquet", rows)
    decoy = [{"index": 5, "tokens": [1] * 64, "__index_level_0__": 5}]
    for other in ("deduped.1.4b-00000-of-00001", "duped.12b-00000-of-00001", "duped.1b-00000-of-00001"):
        write_parquet(data / f"{other}.parquet", decoy)
    out = tmp_path / "memorized-pythia-1.4b.jsonl"
    convert("memorized", data.parent, "--split", "duped.1.4b", "--out", out)
    assert read_jsonl(out) == [{"tokens": r["tokens"], "index": r["index"]} for r in expected]
    reference = datasets_rows(sorted(data.glob("duped.1.4b-*.parquet")), tmp_path / "cache")
    assert [r["tokens"] for r in reference] == [r["tokens"] for r in read_jsonl(out)]
    provenance = json.loads(Path(f"{out}.provenance.json").read_text())
    assert [s["rows_read"] for s in provenance["sources"]] == [25, 25, 25] and provenance["tokens_per_row"] == 64
    # Without --split, a folder holding several splits is refused, one holding one split is taken whole.
    result = convert("memorized", data.parent, "--out", tmp_path / "x.jsonl", check=False)
    assert result.returncode != 0 and "several splits' files (deduped.1.4b, duped.1.4b, duped.12b, duped.1b)" in result.stderr
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in sorted(data.glob("duped.1.4b-*.parquet")):
        (alone / f.name).write_bytes(f.read_bytes())
    convert("memorized", alone, "--out", tmp_path / "alone.jsonl")
    assert (tmp_path / "alone.jsonl").read_text() == out.read_text()


@pytest.mark.parametrize("case, rows, message", [
    ("tokens as strings", [{"index": 1, "tokens": ["a", "b"]}], "column 'tokens' is list<element: string>, expected list<integer>"),
    ("no index", [{"tokens": [1, 2]}], "no column 'index' (integer expected); its columns: tokens (list<element: int64>)"),
    ("ragged rows", [{"index": 1, "tokens": [1, 2, 3]}, {"index": 2, "tokens": [1, 2]}], "row 1: 2 tokens where the rows before had 3"),
])
def test_a_wrong_memorized_schema_is_refused_and_writes_nothing(tmp_path, case, rows, message):
    source = tmp_path / "bad.parquet"
    write_parquet(source, rows)
    out = tmp_path / "out.jsonl"
    result = convert("memorized", source, "--out", out, check=False)
    assert result.returncode != 0 and f"{source}" in result.stderr and message in result.stderr, result.stderr
    assert not out.exists() and not Path(f"{out}.partial").exists() and not Path(f"{out}.provenance.json").exists()


def test_a_benchmark_of_another_schema_names_the_column(tmp_path):
    source = tmp_path / "hub" / "data" / "validation-00000-of-00001.parquet"
    write_parquet(source, [{"goal": "g", "sol1": "a", "sol2": "b", "label": "1"}])  # label as text
    result = convert("piqa", tmp_path / "hub", "--out", tmp_path / "piqa.jsonl", check=False)
    assert result.returncode != 0 and f"{source}: column 'label' is string, expected integer" in result.stderr
    result = convert("arc_easy", tmp_path / "hub", "--out", tmp_path / "arc.jsonl", check=False)
    assert result.returncode != 0 and "no Parquet file of split 'test'" in result.stderr and "the splits there: validation" in result.stderr
