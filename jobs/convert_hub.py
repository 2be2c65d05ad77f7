#!/usr/bin/env python3
"""Turns datasets as downloaded from the Hugging Face Hub (Parquet files) into memsweep's inputs (JSON Lines).

    python3 jobs/convert_hub.py KIND SOURCE --out FILE.jsonl [--split NAME] [--config NAME] [--field NAME]

KIND is what the rows become:
  memorized     EleutherAI/pythia-memorized-evals: columns `index` and `tokens` (64 ids) -> {"tokens": [...], "index": I},
                the rows `memsweep eval --task memorization:FILE` and a study's `kind = "memorization"` read. --split names
                the model's split (duped.1.4b, deduped.12b, ...).
  piqa, arc_easy, arc_challenge, hellaswag, winogrande, sciq, openbookqa, boolq, lambada_openai
                the dataset that lm-evaluation-harness's task YAML names (dataset_path, dataset_name, and the split it
                evaluates: the default of --split), every column kept as the Hub has it -> the JSONL the benchmark kind
                of the same name reads (worker/tasks/benchmarks/README.md).
  text          any Parquet with a text column (--field, default `text`) -> {"text": ...}: a divergence set or
                rolling_loglikelihood's input (e.g. EleutherAI/wikitext_document_level --field page).

SOURCE is what `hf download REPO --repo-type dataset --local-dir DIR` left: the folder (the split's Parquet files are
found in it: files named SPLIT.parquet, SPLIT-00000-of-00003.parquet, ..., or in a folder named SPLIT; --config picks a
configuration's folder where several hold that split), a folder of one split's Parquet files, or one Parquet file.
A split in several files is read in file-name order (the Hub's 00000-of-N numbering).

Beside FILE.jsonl, FILE.jsonl.provenance.json records what was converted: the Hub repository, configuration and split,
each source file's SHA-256, size and rows, the output's SHA-256 and rows, and this command. Rows are streamed (memory
does not grow with the split). A column missing or of another type than the kind reads is an error naming the file,
the column, what was expected and what was found; nothing is written then. Needs pyarrow only (the venv has it).
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import sys
from pathlib import Path

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the one dependency
    sys.exit("convert_hub.py needs pyarrow: pip install pyarrow (memsweep's .venv has it: .venv/bin/python jobs/convert_hub.py)")


class ConvertError(Exception):
    pass


# Column types as a kind reads them: a predicate on the Arrow type and the words an error shows.
def is_string(t):
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_integer(t):
    return pa.types.is_integer(t)


def list_of(element):
    return lambda t: (pa.types.is_list(t) or pa.types.is_large_list(t)) and element(t.value_type)


def struct_of(**fields):
    def check(t):
        if not pa.types.is_struct(t):
            return False
        found = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
        return all(name in found and ok(found[name]) for name, (ok, _) in fields.items())
    return check


STRING, INTEGER = (is_string, "string"), (is_integer, "integer")
CHOICES = (struct_of(text=(list_of(is_string), ""), label=(list_of(is_string), "")), "struct{text: list<string>, label: list<string>}")


# kind -> the harness task whose YAML names the data (None: not a harness task), the Hub repository, configuration and
# split that YAML names (the split it evaluates: test_split, else validation_split), and the columns the kind reads.
# tests/python/test_hub_inputs.py checks the repository, configuration and split against the installed harness's YAMLs.
KINDS = {
    "memorized": dict(task=None, repo="EleutherAI/pythia-memorized-evals", config=None, split=None,
                      columns={"index": INTEGER, "tokens": (list_of(is_integer), "list<integer>")}),
    "piqa": dict(task="piqa", repo="baber/piqa", config=None, split="validation",
                 columns={"goal": STRING, "sol1": STRING, "sol2": STRING, "label": INTEGER}),
    "arc_easy": dict(task="arc_easy", repo="allenai/ai2_arc", config="ARC-Easy", split="test",
                     columns={"question": STRING, "choices": CHOICES, "answerKey": STRING}),
    "arc_challenge": dict(task="arc_challenge", repo="allenai/ai2_arc", config="ARC-Challenge", split="test",
                          columns={"question": STRING, "choices": CHOICES, "answerKey": STRING}),
    "hellaswag": dict(task="hellaswag", repo="Rowan/hellaswag", config=None, split="validation",
                      columns={"activity_label": STRING, "ctx_a": STRING, "ctx_b": STRING,
                               "endings": (list_of(is_string), "list<string>"), "label": STRING}),
    "winogrande": dict(task="winogrande", repo="allenai/winogrande", config="winogrande_xl", split="validation",
                       columns={"sentence": STRING, "option1": STRING, "option2": STRING, "answer": STRING}),
    "sciq": dict(task="sciq", repo="allenai/sciq", config=None, split="test",
                 columns={"support": STRING, "question": STRING, "distractor1": STRING, "distractor2": STRING,
                          "distractor3": STRING, "correct_answer": STRING}),
    "openbookqa": dict(task="openbookqa", repo="allenai/openbookqa", config="main", split="test",
                       columns={"question_stem": STRING, "choices": CHOICES, "answerKey": STRING}),
    "boolq": dict(task="boolq", repo="aps/super_glue", config="boolq", split="validation",
                  columns={"passage": STRING, "question": STRING, "label": INTEGER}),
    "lambada_openai": dict(task="lambada_openai", repo="EleutherAI/lambada_openai", config="default", split="test",
                           columns={"text": STRING}),
    "text": dict(task=None, repo=None, config=None, split=None, columns=None),  # columns: {--field: string}
}


def split_of(path: Path):
    """The split a Hub Parquet file belongs to, by its name: SPLIT-00000-of-00003.parquet, SPLIT.parquet."""
    return re.sub(r"-\d+-of-\d+$", "", path.name[: -len(".parquet")])


def split_files(source: Path, split, config):
    """The Parquet files of one split under `source`, in file-name order."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConvertError(f"{source}: no such file or folder")
    every = sorted(p for p in source.rglob("*.parquet") if p.is_file())
    if not every:
        raise ConvertError(f"{source}: no .parquet file in it (is this what `hf download ... --repo-type dataset` left?)")
    if split is None:  # then the files must be one split's
        splits = sorted({split_of(p) for p in every})
        if len(splits) > 1:
            raise ConvertError(f"{source}: several splits' files ({', '.join(splits[:12])}): pass --split NAME")
        chosen = every
    else:
        def of_split(p):
            stem = p.name[: -len(".parquet")]
            return stem == split or stem.startswith(split + "-") or split in p.relative_to(source).parts[:-1]
        chosen = [p for p in every if of_split(p)]
        if not chosen:
            splits = sorted({split_of(p) for p in every})
            raise ConvertError(f"{source}: no Parquet file of split '{split}' (files named {split}.parquet or {split}-*.parquet, "
                               f"or in a folder {split}/); the splits there: {', '.join(splits[:12])}")
    # Several configurations may hold the split (ARC-Easy/test-*, ARC-Challenge/test-*): one folder, or --config's.
    def group(p):
        parts = p.relative_to(source).parts[:-1]
        return tuple(x for x in parts if x != split)
    groups = sorted({group(p) for p in chosen})
    if len(groups) > 1 and config is not None:
        with_config = [p for p in chosen if config in group(p)]
        if with_config:
            chosen, groups = with_config, sorted({group(p) for p in with_config})
    if len(groups) > 1:
        names = ", ".join("/".join(g) or "." for g in groups)
        raise ConvertError(f"{source}: split '{split}' is in several folders ({names}): pass --config NAME or the folder itself")
    return chosen


def check_schema(path: Path, schema, columns):
    for name, (ok, words) in columns.items():
        index = schema.get_field_index(name)
        if index < 0:
            raise ConvertError(f"{path}: no column '{name}' ({words} expected); its columns: "
                               + ", ".join(f"{f.name} ({f.type})" for f in schema))
        found = schema.field(index).type
        if not ok(found):
            raise ConvertError(f"{path}: column '{name}' is {found}, expected {words}")


def sha256_of(path: Path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_rows(kind, files, partial, digest, sources, field, limit):
    """Streams the files' rows into `partial`; returns (rows, tokens per row)."""
    rows, width = 0, None
    with open(partial, "w", encoding="utf-8") as sink:
        for path in files:
            file_rows = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
                if limit is not None:
                    batch = batch.slice(0, max(0, limit - rows))
                for row in batch.to_pylist():
                    where = f"{path}, row {file_rows}"
                    if kind == "memorized":
                        tokens = row["tokens"]
                        if tokens is None or row["index"] is None or any(t is None for t in tokens):
                            raise ConvertError(f"{where}: a null in 'index' or 'tokens'")
                        if width is None:
                            width = len(tokens)
                        elif len(tokens) != width:
                            raise ConvertError(f"{where}: {len(tokens)} tokens where the rows before had {width}")
                        record = {"tokens": tokens, "index": row["index"]}
                    elif kind == "text":
                        if row[field] is None:
                            raise ConvertError(f"{where}: column '{field}' is null")
                        record = {"text": row[field]}
                    else:
                        record = row
                    line = json.dumps(record, ensure_ascii=False) + "\n"
                    sink.write(line)
                    digest.update(line.encode("utf-8"))
                    rows += 1
                    file_rows += 1
            sources.append({"path": str(path.resolve()), "sha256": sha256_of(path), "bytes": path.stat().st_size,
                            "rows_read": file_rows})
    return rows, width


def convert(kind, source, out, split=None, config=None, field="text", limit=None):
    """Writes `out` (JSONL) and `out`.provenance.json; returns the provenance."""
    spec = KINDS[kind]
    split = split if split is not None else spec["split"]
    config = config if config is not None else spec["config"]
    columns = spec["columns"] if kind != "text" else {field: STRING}
    files = split_files(Path(source), split, config)
    for path in files:  # every file before any row: a wrong schema writes nothing
        try:
            schema = pq.read_schema(path)
        except Exception as e:
            raise ConvertError(f"{path}: not a readable Parquet file ({e})")
        check_schema(path, schema, columns)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    sources, digest = [], hashlib.sha256()
    try:
        rows, width = write_rows(kind, files, partial, digest, sources, field, limit)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if rows == 0:
        partial.unlink()
        raise ConvertError(f"{source}: the split has no rows")
    provenance = {
        "kind": kind, "hub_repository": spec["repo"], "config": config, "split": split,
        "harness_task": spec["task"], "sources": sources, "rows": rows, "out": str(out.resolve()),
        "out_sha256": digest.hexdigest(), "tokens_per_row": width, "text_field": field if kind == "text" else None,
        "limit": limit, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if __name__ == "__main__" else None,
        "converted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    os.replace(partial, out)
    Path(str(out) + ".provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("source", help="a downloaded dataset folder, a folder of one split's Parquet files, or a Parquet file")
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--split", help="the split (default: the one the harness evaluates; memorized: required)")
    parser.add_argument("--config", help="the configuration's folder where several hold the split (default: the harness's)")
    parser.add_argument("--field", default="text", help="kind text: the column holding the text (default: text)")
    parser.add_argument("--limit", type=int, help="write at most this many rows")
    args = parser.parse_args(argv)
    try:
        provenance = convert(args.kind, args.source, args.out, args.split, args.config, args.field, args.limit)
    except ConvertError as e:
        sys.exit(f"error: {e}")
    names = ", ".join(Path(s["path"]).name for s in provenance["sources"])
    print(f"{args.out}: {provenance['rows']} rows from {len(provenance['sources'])} file(s) ({names}); "
          f"provenance in {args.out}.provenance.json")


if __name__ == "__main__":
    main()
