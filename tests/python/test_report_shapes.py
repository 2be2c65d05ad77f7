"""`memsweep report` on every shape of store a study can leave: mid-run (a store of the previous schema, read as it
is), every unit failed, benchmarks only, interventions on several blocks only, both intervention kinds, a control set
listed before the memorized one, two models of different depth. Each exits 0, draws the figures its data allows and
names every skipped one with its reason in report.md; status and report print the same numbers."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from memsweep_testing import make_gpt_neox, run_memsweep, status_metrics

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "jobs" / "demo"
FIGURES = ("fig1_memorization", "fig2_accuracy_drop", "fig3_accuracy_drop_by_depth", "fig4_em_vs_accuracy", "fig5_multi_block",
           "fig6_divergence")
DATASETS = {
    "canaries": f'kind = "memorization"\npath = "{DEMO}/canaries.jsonl"\noptions = {{ prefix = 16, limit = 12 }}\n',
    "controls": f'kind = "memorization"\nrole = "control"\npath = "{DEMO}/controls.jsonl"\noptions = {{ prefix = 16, limit = 8 }}\n',
    "facts": f'kind = "multiple_choice"\npath = "{DEMO}/world_facts.jsonl"\n'
             'options = { context = "{{context}}", choices = "choices", label = "label", limit = 12, tag = "language" }\n',
    "pattern": f'kind = "multiple_choice"\npath = "{DEMO}/pattern.jsonl"\n'
               'options = { context = "{{context}}", choices = "choices", label = "label", limit = 12, tag = "reasoning" }\n',
    "divergence": f'kind = "divergence"\npath = "{DEMO}/divergence.jsonl"\noptions = {{ limit = 6 }}\n',
}


def run_study(folder, name, datasets, interventions, models=(("demo", DEMO),), run="", expect_done=True):
    text = f"[run]\nunit_size = 100\nattempts = 1\n{run}\n[interventions]\n{interventions}\n"
    for model, path in models:
        text += f'[[models]]\nname = "{model}"\npath = "{path}"\n'
    for dataset in datasets:
        text += f'[[datasets]]\nname = "{dataset}"\n{DATASETS[dataset]}'
    (folder / f"{name}.toml").write_text(text)
    store = folder / f"{name}.sqlite"
    run_memsweep("run", folder / f"{name}.toml", "--db", store, check=expect_done)
    return store


def report(store, out):
    """Runs report (it must exit 0); returns (report.md, {figure: None if drawn else the skip reason})."""
    result = run_memsweep("report", store, "--out", out)
    if "gnuplot not found" in result.stderr:
        pytest.skip("gnuplot is absent (bash .ci/setup installs gnuplot-nox)")
    markdown = (out / "report.md").read_text()
    outcome = {}
    drawn = markdown.split("Drawn: ")[1].split("\n")[0]
    for png in out.glob("*.png"):
        assert f"`{png.name}`" in drawn and png.stat().st_size > 10000 and png.with_suffix(".svg").exists(), png
        outcome[png.stem] = None
    if "Skipped:" in markdown:
        for line in markdown.split("Skipped:\n\n")[1].split("\n\n")[0].splitlines():
            name, reason = line[len("- `"):].split("`: ", 1)
            outcome[name] = reason
    print(f"{store.name}: " + "; ".join(f"{name}: {reason or 'drawn'}" for name, reason in sorted(outcome.items())))
    return markdown, outcome


def drawn(outcome):
    return sorted(name for name, reason in outcome.items() if reason is None)


def test_mid_run_store_of_the_previous_schema(tmp_path):
    store = tmp_path / "interrupted.sqlite"
    shutil.copy(ROOT / "tests" / "data" / "stores" / "v1_interrupted.sqlite", store)  # 12 of 30 units done, schema 1
    markdown, outcome = report(store, tmp_path / "out")
    assert "**The study is unfinished: 12 of 30 units are done.**" in markdown
    assert drawn(outcome) == ["fig1_memorization_demo"]  # canaries have results; the benchmark has none yet
    assert "has a relative accuracy drop yet" in outcome["fig2_accuracy_drop_demo"]
    assert "no model has both EM on a memorized set and benchmark accuracy yet" in outcome["fig4_em_vs_accuracy"]
    assert "no intervention on several blocks" in outcome["fig5_multi_block_demo"]


def test_every_unit_failed(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(DEMO, broken)
    # A well-formed file (what run checks before any work) whose first matrix has its dimensions swapped: every unit
    # fails at load with the loader's shape error, which names the file.
    with open(broken / "model.safetensors", "r+b") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
        name = next(k for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 2 and v["shape"][0] != v["shape"][1])
        header[name]["shape"].reverse()
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= length
        f.seek(8)
        f.write(text + b" " * (length - len(text)))
    store = run_study(tmp_path, "failed", ["canaries", "facts"], "single_blocks = true", models=(("broken", broken),), expect_done=False)
    markdown, outcome = report(store, tmp_path / "out")
    assert drawn(outcome) == [] and len(outcome) == 5
    assert "Failed units (no attempts left)" in markdown and "model.safetensors" in markdown
    assert all("has no" in reason or "yet" in reason for reason in outcome.values()), outcome


def test_benchmarks_only(tmp_path):
    store = run_study(tmp_path, "benchmarks", ["facts", "pattern"], "single_blocks = true")
    markdown, outcome = report(store, tmp_path / "out")
    assert drawn(outcome) == ["fig2_accuracy_drop_demo", "fig3_accuracy_drop_by_depth"]
    assert "has no dataset with the role \"memorized\"" in outcome["fig1_memorization_demo"]
    assert "Memorized set: none" in markdown


def test_several_blocks_only(tmp_path):
    store = run_study(tmp_path, "ablations", ["canaries", "facts"], 'blocks = ["0-2", "3-5"]\nlast = [2]')
    markdown, outcome = report(store, tmp_path / "out")
    assert drawn(outcome) == ["fig4_em_vs_accuracy", "fig5_multi_block_demo"]
    assert "no single-block intervention" in outcome["fig1_memorization_demo"]
    assert "### Interventions on several blocks" in markdown and "short_circuit:4-5" in markdown


def test_both_kinds_and_status_agrees_with_the_report(tmp_path):
    store = run_study(tmp_path, "kinds", ["canaries", "facts", "pattern", "divergence"],
                      'single_blocks = true\nkinds = ["short_circuit", "zero_attention"]')
    out = tmp_path / "out"
    markdown, outcome = report(store, out)
    assert drawn(outcome) == ["fig1_memorization_demo", "fig2_accuracy_drop_demo", "fig3_accuracy_drop_by_depth",
                              "fig4_em_vs_accuracy", "fig6_divergence_demo_divergence"]
    for figure in ("fig1_memorization_demo", "fig2_accuracy_drop_demo", "fig6_divergence_demo_divergence"):  # a series per kind
        for kind in ("short_circuit", "zero_attention"):
            assert (out / "gnuplot" / f"{figure}_{kind}.dat").exists(), (figure, kind)
        assert "attention zeroed" in (out / "gnuplot" / f"{figure}.gp").read_text()
    summaries = {r["intervention"]: r["kind"] for r in csv.DictReader(open(out / "interventions.csv"))}
    assert summaries["zero_attention:3"] == "zero_attention" and summaries["short_circuit:3"] == "short_circuit"
    # One set of numbers: every metric status prints equals metrics.csv's.
    csv_values = {(r["dataset"], r["intervention"], r["metric"]): float(r["value"]) for r in csv.DictReader(open(out / "metrics.csv"))}
    csv_errors = {(r["dataset"], r["intervention"], r["metric"]): r["stderr"] for r in csv.DictReader(open(out / "metrics.csv"))}
    compared = 0
    for (_, dataset, intervention), metrics in status_metrics(store).items():
        for name, (value, error) in metrics.items():
            assert value == pytest.approx(csv_values[(dataset, intervention, name)], rel=1e-5, abs=1e-9)
            assert (error is None) == (csv_errors[(dataset, intervention, name)] == "")
            if error is not None:  # printed in two significant digits
                assert error == pytest.approx(float(csv_errors[(dataset, intervention, name)]), rel=0.05, abs=1e-12)
            compared += 1
    assert compared > 100


def test_a_control_set_listed_first(tmp_path):
    store = run_study(tmp_path, "controls", ["controls", "canaries", "facts"], "single_blocks = true")
    markdown, outcome = report(store, tmp_path / "out")
    assert "Memorized set: `canaries`" in markdown and "`controls` (control)" in markdown
    assert "on canaries" in (tmp_path / "out" / "gnuplot" / "fig1_memorization_demo.gp").read_text()
    assert "fig1_memorization_demo" in drawn(outcome)


def test_two_models_of_different_depth(tmp_path):
    small = tmp_path / "small"
    make_gpt_neox(small, seed=2, vocab_size=2048, num_hidden_layers=4)
    shutil.copy(DEMO / "tokenizer.json", small / "tokenizer.json")
    store = run_study(tmp_path, "depths", ["canaries", "facts", "pattern"], "single_blocks = true",
                      models=(("demo", DEMO), ("small", small)))
    out = tmp_path / "out"
    markdown, outcome = report(store, out)
    assert {"fig3_accuracy_drop_by_depth", "fig4_em_vs_accuracy", "fig1_memorization_demo", "fig1_memorization_small"} <= set(drawn(outcome))
    for model, layers in (("demo", 6), ("small", 4)):  # relative depth (block + 0.5) / blocks: both span (0, 1)
        rows = [line.split() for line in (out / "gnuplot" / f"fig3_accuracy_drop_by_depth_{model}_short_circuit.dat").read_text().splitlines()
                if not line.startswith("#")]
        assert [float(r[0]) for r in rows] == pytest.approx([(b + 0.5) / layers for b in range(layers)])
