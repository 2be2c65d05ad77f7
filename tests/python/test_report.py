"""`memsweep report` on a small study of the demo model (jobs/demo: it really memorized its canaries): the numbers of
report.md and of the CSV files equal the store's (read here with sqlite3, finalized here), relative changes are
(value - baseline) / |baseline| where the baseline is clear of noise, an unfinished study gets its "What is missing"
section, every figure is a valid, non-empty PNG and SVG, and without gnuplot report.md and the CSV files are still
written and report.md names why no figure is."""
import csv
import json
import math
import re
import shutil
import sqlite3
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from memsweep_testing import run_memsweep, store_examples

DEMO = Path(__file__).resolve().parents[2] / "jobs" / "demo"
MC = '{ context = "{{context}}", choices = "choices", label = "label", limit = 12, tag = "%s" }'
STUDY = f"""
[study]
name = "report_test"
[[models]]
name = "demo"
path = "{DEMO}"
[[datasets]]
name = "canaries"
kind = "memorization"
path = "{DEMO / 'canaries.jsonl'}"
options = {{ prefix = 16 }}
[[datasets]]
name = "controls"
kind = "memorization"
role = "control"
path = "{DEMO / 'controls.jsonl'}"
options = {{ prefix = 16 }}
[[datasets]]
name = "world_facts"
kind = "multiple_choice"
path = "{DEMO / 'world_facts.jsonl'}"
options = {MC % 'language'}
[[datasets]]
name = "pattern"
kind = "multiple_choice"
path = "{DEMO / 'pattern.jsonl'}"
options = {MC % 'reasoning'}
[[datasets]]
name = "divergence"
kind = "divergence"
path = "{DEMO / 'divergence.jsonl'}"
options = {{ limit = 16 }}
[interventions]
single_blocks = true
blocks = ["4-5"]
[run]
batch_size = 16
unit_size = 16
"""
LAYERS = 6


def store_metrics(store):
    """(dataset, intervention) -> metrics, finalized here from the done units' totals as results.cpp documents it."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT d.name, d.kind, i.name, g.totals_json FROM aggregates g JOIN units u ON u.id = g.unit_id "
                          "JOIN datasets d ON d.id = u.dataset_id JOIN interventions i ON i.id = g.intervention_id "
                          "WHERE u.status = 'done'").fetchall()
    totals, kinds = {}, {}
    for dataset, kind, intervention, text in rows:
        kinds[dataset] = kind
        summed = totals.setdefault((dataset, intervention), {})
        for key, value in json.loads(text).items():
            summed[key] = summed.get(key, 0.0) + value
    metrics = {}
    for key, summed in totals.items():
        count = summed["positions"] if kinds[key[0]] == "divergence" else summed["examples"]
        metrics[key] = {name: value if name in ("examples", "positions") else value / count for name, value in summed.items()}
    return metrics


PROPORTIONS = ("exact_match", "token_accuracy", "acc", "acc_norm")


def relative(value, baseline, metric="", examples=None):
    """(value - baseline) / |baseline|; None for a zero baseline, and for a mean of [0, 1] values whose baseline is not
    two standard errors above zero (report.h's rule: the change is what to read there)."""
    if baseline in (None, 0):
        return None
    if metric in PROPORTIONS and baseline <= 2 * math.sqrt(max(baseline * (1 - baseline), 0) / examples):
        return None
    return (value - baseline) / abs(baseline)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def intervention_tables(markdown):
    """'#### NAME' -> {(dataset, metric): (value, baseline, change, p, relative change)} as report.md prints them
    (value and baseline with "± standard error", the change with its interval, where they have them)."""
    tables = {}
    for block in re.split(r"^#### ", markdown, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        rows = {}
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 7 and cells[0] not in ("dataset", "---"):
                rows[(cells[0], cells[1])] = tuple(cells[2:])
        tables[name.strip()] = rows
    return tables


def number(cell):
    return None if cell == "n/a" else float(cell.split(" ")[0].rstrip("%"))


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300, (path, width, height)
    assert len(data) > 10000, (path, len(data))  # a drawn figure, not an empty canvas


def check_svg(path):
    root = ElementTree.parse(path).getroot()
    assert root.tag.endswith("svg"), path
    drawn = [e for e in root.iter() if e.tag.split("}")[-1] in ("path", "polyline", "polygon", "rect", "line", "circle")]
    texts = [e for e in root.iter() if e.tag.split("}")[-1] == "text"]
    assert len(drawn) > 20 and len(texts) > 5, (path, len(drawn), len(texts))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    (folder / "study.toml").write_text(STUDY)
    run_memsweep("run", folder / "study.toml", "--db", folder / "study.sqlite")
    return folder


def test_report_numbers_equal_the_store(study):
    out = study / "report"
    result = run_memsweep("report", study / "study.sqlite", "--out", out, "--examples")
    if "gnuplot not found" in result.stderr:
        pytest.skip("gnuplot is absent (bash .ci/setup installs gnuplot-nox)")
    expected = store_metrics(study / "study.sqlite")
    interventions = ["baseline"] + [f"short_circuit:{b}" for b in range(LAYERS)] + ["short_circuit:4-5"]

    rows = read_csv(out / "metrics.csv")
    assert len(rows) == sum(len(m) for m in expected.values())
    for row in rows:
        value = expected[(row["dataset"], row["intervention"])][row["metric"]]
        assert float(row["value"]) == pytest.approx(value, rel=1e-12, abs=1e-15), row
        baseline = expected.get((row["dataset"], "baseline"), {}).get(row["metric"])
        change = relative(value, baseline, row["metric"], expected[(row["dataset"], "baseline")]["examples"])
        if baseline is not None:
            assert float(row["change"]) == pytest.approx(value - baseline, rel=1e-9, abs=1e-12), row
        assert (row["relative_change"] == "") == (change is None), row
        if change is not None:
            assert float(row["relative_change"]) == pytest.approx(change, rel=1e-9, abs=1e-12), row
    assert {r["tag"] for r in rows if r["dataset"] == "world_facts"} == {"language"}
    assert {r["tag"] for r in rows if r["dataset"] == "pattern"} == {"reasoning"}

    markdown = (out / "report.md").read_text()
    assert "The study is complete" in markdown and "## What is missing" not in markdown
    assert "## Provenance" in markdown and "Memorized set: `canaries`" in markdown and "`controls` (control)" in markdown
    assert {r["role"] for r in rows if r["dataset"] == "controls"} == {"control"}
    tables = intervention_tables(markdown)
    assert list(tables) == interventions
    checked = 0
    for intervention, table in tables.items():
        for (dataset, metric), (value, baseline, difference, _, change) in table.items():
            truth = expected[(dataset, intervention)][metric]
            truth_base = expected[(dataset, "baseline")].get(metric)
            assert number(value) == pytest.approx(truth, abs=5.1e-5), (intervention, dataset, metric)
            if truth_base is not None:
                assert number(baseline) == pytest.approx(truth_base, abs=5.1e-5)
                assert number(difference) == pytest.approx(truth - truth_base, abs=5.1e-5)
            truth_change = relative(truth, truth_base, metric, expected[(dataset, "baseline")]["examples"])
            if truth_change is None:
                assert change == "n/a"
            else:
                assert number(change) == pytest.approx(100 * truth_change, abs=0.051), (intervention, dataset, metric, change)
            checked += 1
    assert checked == 8 * (3 + 3 + 2 + 2) + 7  # EM/TA/CE of two sets, acc/acc_norm of two, the output KL of 7

    # interventions.csv: the overview's numbers and the efficiency of every intervention
    summaries = {r["intervention"]: r for r in read_csv(out / "interventions.csv")}
    base_acc = (expected[("world_facts", "baseline")]["acc"] + expected[("pattern", "baseline")]["acc"]) / 2
    base_em = expected[("canaries", "baseline")]["exact_match"]
    for name in interventions:
        em = expected[("canaries", name)]["exact_match"]
        acc = (expected[("world_facts", name)]["acc"] + expected[("pattern", name)]["acc"]) / 2
        assert float(summaries[name]["exact_match"]) == pytest.approx(em, rel=1e-12)
        assert float(summaries[name]["mean_accuracy"]) == pytest.approx(acc, rel=1e-12)
        if name != "baseline":
            language = (expected[("world_facts", "baseline")]["acc"] - expected[("world_facts", name)]["acc"]) / expected[("world_facts", "baseline")]["acc"]
            assert float(summaries[name]["language_drop"]) == pytest.approx(language, rel=1e-9, abs=1e-12)
            assert float(summaries[name]["efficiency"]) == pytest.approx((base_em - em) / max(base_acc - acc, 0.01), rel=1e-9)

    # divergence.csv: every (intervention, later layer) of the store
    divergence = read_csv(out / "divergence.csv")
    for row in divergence:
        truth = expected[("divergence", row["intervention"])]
        assert float(row["relative_change"]) == pytest.approx(truth[f"relative_change.{int(row['layer']):02d}"], rel=1e-12)
        assert float(row["kl"]) == pytest.approx(truth[f"kl.{int(row['layer']):02d}"], rel=1e-12, abs=1e-15)
    assert len([r for r in divergence if r["intervention"] == "short_circuit:2"]) == LAYERS - 2

    # examples.csv (--examples): one row per stored example and metric or fact, as the columns decode
    stored = store_examples(study / "study.sqlite")
    examples = read_csv(out / "examples.csv")
    assert len(examples) == sum(len(values) + len(facts) for values, facts, _ in stored.values())
    key = next(k for k in stored if k[0].split("|")[1] == "canaries" and k[1] == "short_circuit:3" and k[2] == 5)
    for fact, numbers in enumerate(stored[key][:2]):
        for name, value in numbers.items():
            match = [r for r in examples if (r["dataset"], r["intervention"], r["example_index"], r["name"], r["fact"]) ==
                     ("canaries", "short_circuit:3", "5", name, str(fact))]
            assert len(match) == 1 and float(match[0]["value"]) == pytest.approx(value, rel=1e-12)

    # The memorized rows' section: what the views say, as the decoded exact matches give it.
    em = {(k[1], k[2]): v[0]["exact_match"] for k, v in stored.items() if k[0].split("|")[1] == "canaries"}
    section = markdown.split("### Rows of `canaries`")[1].split("\n### ")[0]
    assert f"The baseline reproduces {sum(em[('baseline', i)] for i in range(42)):.0f} rows exactly; " in section
    for name in interventions[1:]:
        removed = sum(em[("baseline", i)] == 1 and em[(name, i)] == 0 for i in range(42))
        added = sum(em[("baseline", i)] == 0 and em[(name, i)] == 1 for i in range(42))
        assert f"| {name} | {removed} | {added} |" in section, (name, section)

    figures = sorted(out.glob("*.png"))
    assert [f.name for f in figures] == ["fig1_memorization_demo.png", "fig2_accuracy_drop_demo.png", "fig3_accuracy_drop_by_depth.png",
                                         "fig4_em_vs_accuracy.png", "fig5_multi_block_demo.png",
                                         "fig6_divergence_demo_divergence.png"]
    for png in figures:
        check_png(png)
        check_svg(png.with_suffix(".svg"))
        assert f"]({png.name})" in markdown
    assert "report: " in result.stdout and "short_circuit:4-5" in result.stdout


def test_unfinished_study_lists_what_is_missing(study):
    store = study / "unfinished.sqlite"
    shutil.copy(study / "study.sqlite", store)
    with sqlite3.connect(store) as db:  # what a killed job leaves: one pattern unit never done
        (unit,) = db.execute("SELECT u.id FROM units u JOIN datasets d ON d.id = u.dataset_id WHERE d.name = 'pattern'").fetchone()
        db.execute("DELETE FROM aggregates WHERE unit_id = ?", (unit,))
        db.execute("DELETE FROM example_values WHERE unit_id = ?", (unit,))
        db.execute("UPDATE units SET status = 'pending' WHERE id = ?", (unit,))
        units = db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    out = study / "unfinished"
    run_memsweep("report", store, "--out", out, "--no-figures")
    markdown = (out / "report.md").read_text()
    assert f"**The study is unfinished: {units - 1} of {units} units are done.**" in markdown
    missing = markdown.split("## What is missing")[1].split("\n## ")[0]
    assert re.search(r"\| demo \| pattern \| 1 \| 0 \| 0 \| 0 \| 1 \|", missing), missing
    assert "world_facts" not in missing
    table = intervention_tables(markdown)["short_circuit:1"]
    assert table[("pattern", "acc")][0] == "n/a" and table[("world_facts", "acc")][0] != "n/a"
    assert not any(r["dataset"] == "pattern" for r in read_csv(out / "metrics.csv"))


def test_without_gnuplot_the_tables_are_written_and_report_md_says_why(study):
    out = study / "no_gnuplot"
    result = run_memsweep("report", study / "study.sqlite", "--out", out, "--gnuplot", study / "absent" / "gnuplot")
    assert "gnuplot not found" in result.stderr and "gnuplot-nox" in result.stderr, result.stderr
    assert (out / "report.md").stat().st_size > 1000 and (out / "metrics.csv").exists()
    assert not (out / "examples.csv").exists()  # only with --examples, and report.md says so
    markdown = (out / "report.md").read_text()
    assert "- `examples.csv`: not written (per-example numbers: `memsweep report --examples`" in markdown
    assert "Drawn: none" in markdown and "- `fig1_memorization_demo`: gnuplot not found" in markdown
    assert not list(out.glob("*.png"))
