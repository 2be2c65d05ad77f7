"""The store's per-example columns (schemas/store.md) on the demo study (jobs/demo.toml): the default detail gives back
every number the worker computed, bit for bit (against `memsweep eval` of the same model, data and batches); the views
answer a researcher's three questions (per-row EM under every intervention, the rows that survive every intervention,
the rows each intervention flips) as a direct computation over the decoded values does, also while units are pending;
a memorization example x intervention costs at most 40 bytes of column data."""
import json
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest

from memsweep_testing import MEMSWEEP_BIN, run_memsweep, store_examples

ROOT = Path(__file__).resolve().parents[2]
DEMO_STUDY = ROOT / "jobs" / "demo.toml"
INTERVENTIONS = ["baseline"] + [f"short_circuit:{b}" for b in range(6)] + ["short_circuit:4-5"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compact")
    run_memsweep("run", DEMO_STUDY, "--db", folder / "demo.sqlite")
    return folder


def demo_variant(folder, name, *replacements):
    """The demo study file with (old, new) replacements, its paths made absolute, written to folder/name."""
    text = DEMO_STUDY.read_text().replace('= "demo', f'= "{DEMO_STUDY.parent}/demo')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (folder / name).write_text(text)
    return folder / name


def by_dataset(store):
    """{(dataset, intervention, index): (values, facts, detail)} of a store."""
    return {(key.split("|")[1], name, index): entry for (key, name, index), entry in store_examples(store).items()}


def test_the_default_detail_gives_back_every_number_the_worker_computed(demo):
    # One unit per dataset, so that the run's batches are eval's (units of 16 batch multiple-choice requests otherwise,
    # which changes float rounding).
    study_file = demo_variant(demo, "one_unit.toml", ("unit_size = 16", "unit_size = 1000"))
    run_memsweep("run", study_file, "--db", demo / "one_unit.sqlite")
    study = tomllib.loads(study_file.read_text())
    batch = study["run"]["batch_size"]
    stored = by_dataset(demo / "one_unit.sqlite")
    compared = 0
    for dataset in study["datasets"]:
        out = demo / f"eval-{dataset['name']}.json"
        args = [MEMSWEEP_BIN, "eval", "--model", study["models"][0]["path"], "--task", f"{dataset['kind']}:{dataset['path']}",
                "--batch-size", batch, "--out", out]
        for key, value in dataset.get("options", {}).items():
            args += ["--option", f"{key}={json.dumps(value)}"]
        for name in INTERVENTIONS:
            args += ["--intervention", name]
        result = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        for entry in json.loads(out.read_text())["results"]:
            for example in entry["examples"]:
                if dataset["kind"] == "divergence" and entry["intervention"] == "baseline":  # nothing to measure
                    assert stored[(dataset["name"], "baseline", example["index"])] == ({}, {}, None)
                    compared += 1
                    continue
                values, facts, detail = stored[(dataset["name"], entry["intervention"], example["index"])]
                assert (values, facts) == (example["values"], example["facts"]), (dataset["name"], entry["intervention"], example["index"])
                assert detail is None  # the default keeps no detail JSON
                compared += 1
    assert compared == len(stored)
    memorization = [facts for (dataset, _, _), (values, facts, _) in stored.items() if dataset == "canaries"]
    assert any("mismatch_token" in f for f in memorization) and any("mismatch_token" not in f for f in memorization)
    print(f"{compared} examples x interventions of {len(study['datasets'])} datasets: stored = computed, bit for bit")


def direct_answers(store):
    """The three questions answered from the decoded columns, without the views."""
    em = {}
    with sqlite3.connect(store) as db:
        planned = db.execute("SELECT d.name, i.name, u.first, u.count FROM units u JOIN datasets d ON d.id = u.dataset_id "
                             "JOIN unit_interventions ui ON ui.unit_id = u.id JOIN interventions i ON i.id = ui.intervention_id "
                             "WHERE d.kind = 'memorization'").fetchall()
    stored = by_dataset(store)
    for dataset, intervention, first, count in planned:
        for index in range(first, first + count):
            entry = stored.get((dataset, intervention, index))
            em[(dataset, intervention, index)] = None if entry is None else int(entry[0]["exact_match"])
    rows = {(d, i) for d, _, i in em}
    surviving = {(d, i) for d, i in rows if all(em[(d, n, i)] == 1 for n in {n for e, n, _ in em if e == d})}
    flipped = {(d, n, i, em[(d, "baseline", i)], em[(d, n, i)]) for d, n, i in em
               if n != "baseline" and None not in (em[(d, n, i)], em[(d, "baseline", i)]) and em[(d, n, i)] != em[(d, "baseline", i)]}
    return em, surviving, flipped


def view_answers(store):
    with sqlite3.connect(store) as db:
        em = {(d, n, i): v for d, n, i, v in db.execute("SELECT dataset, intervention, example_index, exact_match FROM exact_match")}
        surviving = set(db.execute("SELECT dataset, example_index FROM surviving_rows"))
        flipped = set(db.execute("SELECT dataset, intervention, example_index, baseline_exact_match, exact_match FROM flipped_rows"))
    return em, surviving, flipped


def test_the_views_answer_the_three_questions(demo):
    store = demo / "demo.sqlite"
    em, surviving, flipped = view_answers(store)
    assert (em, surviving, flipped) == direct_answers(store)
    assert len(em) == (42 + 6) * len(INTERVENTIONS) and None not in em.values()
    assert any(v == 1 for (_, n, _), v in em.items() if n == "baseline") and flipped
    print(f"demo: {sum(em[('canaries', 'baseline', i)] for i in range(42))} of 42 canaries memorized, {len(surviving)} "
          f"survive every intervention, {len(flipped)} flips")

    # Fewer interventions: rows survive all of them; a pending unit's rows are NULL and survive nothing yet.
    study = demo_variant(demo, "two_blocks.toml", ('single_blocks = true\nblocks = ["4-5"]', 'names = ["short_circuit:1", "short_circuit:3"]'))
    two = demo / "two.sqlite"
    run_memsweep("run", study, "--db", two)
    em, surviving, flipped = view_answers(two)
    assert (em, surviving, flipped) == direct_answers(two)
    assert surviving and {n for _, n, _ in em} == {"baseline", "short_circuit:1", "short_circuit:3"}
    pending = demo / "pending.sqlite"
    shutil.copy(two, pending)
    with sqlite3.connect(pending) as db:  # what a killed job leaves: the canaries' first unit (rows 0-15) not done
        unit, = db.execute("SELECT u.id FROM units u JOIN datasets d ON d.id = u.dataset_id WHERE d.name = 'canaries' "
                           "AND u.first = 0").fetchone()
        db.execute("DELETE FROM example_values WHERE unit_id = ?", (unit,))
        db.execute("DELETE FROM aggregates WHERE unit_id = ?", (unit,))
        db.execute("UPDATE units SET status = 'pending' WHERE id = ?", (unit,))
    em, surviving, flipped = view_answers(pending)
    assert (em, surviving, flipped) == direct_answers(pending)
    assert all((v is None) == (i < 16) for (d, _, i), v in em.items() if d == "canaries")
    assert surviving and all(i >= 16 for d, i in surviving if d == "canaries")
    assert all(i >= 16 for d, _, i, *_ in flipped if d == "canaries")


def test_a_memorization_example_costs_at_most_40_bytes_of_column_data(demo):
    with sqlite3.connect(demo / "demo.sqlite") as db:
        pairs, data = db.execute(
            "SELECT SUM(u.count), (SELECT SUM(length(v.data)) FROM example_values v JOIN units w ON w.id = v.unit_id "
            "JOIN datasets e ON e.id = w.dataset_id WHERE e.kind = 'memorization') FROM units u JOIN unit_interventions ui "
            "ON ui.unit_id = u.id JOIN datasets d ON d.id = u.dataset_id WHERE d.kind = 'memorization'").fetchone()
        encodings = dict(db.execute("SELECT DISTINCT v.name, v.encoding FROM example_values v JOIN units u ON u.id = v.unit_id "
                                    "JOIN datasets d ON d.id = u.dataset_id WHERE d.kind = 'memorization'"))
    print(f"memorization: {data / pairs:.1f} bytes of column data per example x intervention; encodings {encodings}")
    assert encodings["exact_match"] == "u8"  # the exact_match view reads it as one byte per example
    assert data / pairs <= 40


def test_plan_projects_the_store_size(tmp_path):
    """`plan` prints the size the store will have; on the demo study it is within a factor 1.5 of what a run makes."""
    store = tmp_path / "demo.sqlite"
    line = next(l for l in run_memsweep("plan", DEMO_STUDY, "--db", store).stdout.splitlines() if l.startswith("store: about "))
    number, unit = line.split()[2:4]
    projected = float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
    run_memsweep("run", DEMO_STUDY, "--db", store)
    actual = store.stat().st_size
    print(f"demo: plan projected {projected / 1e3:.0f} kB, the store has {actual / 1e3:.0f} kB")
    assert actual / 1.5 <= projected <= actual * 1.5
