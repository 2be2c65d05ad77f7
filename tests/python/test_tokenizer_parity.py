"""memsweep tokenize against the Hugging Face `tokenizers` package on the real tokenizers of GPT-NeoX-20B, GPT-2,
Llama 3, Qwen2, OLMo 2, Llama 2 and Mistral: identical ids for hand-picked hard texts, every string of the PIQA and
ARC-Easy files and the shared test vectors, identical decoded text, decode(encode(x)) == x where the tokenizer is
lossless (and exactly what it loses where not), the documented ill-formed UTF-8 behaviour, the content hash, and Llama
2's folder against the pipeline transformers builds from it.
The binary is driven with many texts per call (one per line; --whole-file only for texts with '\\n')."""
import json
import os
import pathlib
import shutil
import subprocess
import unicodedata

import pytest

tokenizers = pytest.importorskip("tokenizers")

BIN = os.environ.get("MEMSWEEP_BIN", "")
SHARED = pathlib.Path(os.environ.get("MEMSWEEP_SHARED_DIR", "/nonexistent"))
NEOX_JSON = SHARED / "data/tokenizers/gpt-neox-20b/tokenizer.json"
GPT2_DIR = SHARED / "data/tokenizers/gpt2"
BENCHMARKS = [SHARED / "data/piqa/validation.jsonl", SHARED / "data/arc-easy/test.jsonl"]

if not BIN or not os.access(BIN, os.X_OK):
    pytest.skip(f"MEMSWEEP_BIN={BIN!r} is not an executable memsweep binary", allow_module_level=True)
for needed in [NEOX_JSON, GPT2_DIR / "tokenizer.json", GPT2_DIR / "vocab.json", GPT2_DIR / "merges.txt"]:
    if not needed.exists():
        pytest.skip(f"shared tokenizer file {needed} is absent (set MEMSWEEP_SHARED_DIR)", allow_module_level=True)

HAND_PICKED = [
    "", "a", " ", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    # NFC: decomposed é (e + U+0301), Å, Hangul jamo, already composed forms
    "cafe\u0301", "Cafe\u0301 au lait", "A\u030a", "\u1100\u1161\u11a8", "caf\u00e9", "e\u0301\u0301",
    "\u212b ohm \u2126",  # singletons that NFC maps to other code points
    # scripts
    "日本語のテキストです。", "中文字符测试", "한국어 문장", "مرحبا بالعالم", "नमस्ते दुनिया", "Привет, мир!",
    "Ελληνικά γράμματα", "עברית", "ไทย ภาษา",
    # digits
    "123", "3.14159", "1,000,000", "0x1F", "٣٤٥ ١٢", "١٢٣ and 456", "²³ ½",
    # contractions, and capitalized ones the regex does not treat as contractions
    "it's", "don't", "we're", "they've", "I'm", "we'll", "he'd", "IT'S", "DON'T", "WE'RE", "THEY'VE",
    "I'M", "WE'LL", "HE'D", "'s'S't'T", "rock 'n' roll", "''s",
    # emoji, ZWJ sequences, flags, skin tones, variation selectors
    "😀", "I ❤️ NY", "👩‍👩‍👧‍👦 family", "🇫🇷🇯🇵🇺🇸", "👍🏽 ok", "🏳️‍🌈", "a😀b😀c",
    # special tokens inside text
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> ", "<|padding|>x",
    "<|endoftext", "<|endoftext|>\u0301",
    # whitespace other than spaces
    "a\tb", "\t\t", " \t \t ", "a\rb", "line\r", "\x0b\x0c", "x\u00a0y", "x\u00a0\u00a0y", "a\u2028b",
    "a\u3000b", "a\u200bb", "a\u180eb", "a\x1cb", " \x1c\x1c x", "a\x85b", "x \x85\x85 y", "  \x85  b",
    "\u2003\u2003em", "\u202f\u205f", "nul\x00byte", "\x7f\x01",
    # punctuation and symbols
    "!!!???", "...", "—–-", "«quotes»", "(a)[b]{c}", "$100.00", "@user #tag", "http://example.com/a?b=c",
    "€£¥", "∑∫√", "©®™", "a_b-c.d",
]
HAND_PICKED += [" " * n for n in range(1, 31)]
HAND_PICKED += ["a" + " " * n + "b" for n in range(1, 31)]
HAND_PICKED += [" " * n + "x" for n in (1, 2, 3, 23, 24, 25, 26, 48, 49)]
HAND_PICKED += ["x" + " " * n for n in (1, 2, 3, 24, 25)]
HAND_PICKED += [" \t" * n + "y" for n in range(1, 6)] + ["\t" + " " * n + "\t" for n in range(1, 6)]
MULTILINE = ["a\nb", "\n", "\n\n\n", "  \n  ", "x \n y", "line one\r\nline two\r\n", "tab\t\nnext",
             "para\n\n  indented", "<|endoftext|>\nafter", "e\u0301\ncafe\u0301\n"]
# Ill-formed UTF-8: memsweep replaces each maximal ill-formed subpart with U+FFFD before encoding.
INVALID_UTF8 = [b"\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82 x", b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0\x9f", b"\xfe\xfe\xff",
                b"a  \xe0\x80\x80  b", b"\xf8\x88\x80\x80\x80", b"ok \xe2\x82\xac\x80 ok"]


def benchmark_strings():
    def strings_of(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                yield from strings_of(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in ("id", "label", "answerKey", "label_id"):
                    yield from strings_of(item)
    texts = []
    for path in BENCHMARKS:
        if not path.exists():
            pytest.skip(f"benchmark file {path} is absent (set MEMSWEEP_SHARED_DIR)")
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.extend(strings_of(json.loads(line)))
    return texts


def run(args, stdin=b"", check=True):
    result = subprocess.run([BIN, "tokenize", *args], input=stdin, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"memsweep tokenize {args} failed: {result.stderr.decode(errors='replace')}")
    return result


def encode_lines(tokenizer_path, texts, *options):
    """One call for all texts (str or bytes), one per line: none may contain '\\n'."""
    data = b"".join((t.encode("utf-8") if isinstance(t, str) else t) + b"\n" for t in texts)
    out = run(["--tokenizer", str(tokenizer_path), *options], data).stdout.decode().split("\n")
    assert out[-1] == "" and len(out) == len(texts) + 1, f"{len(out) - 1} output lines for {len(texts)} texts"
    return [json.loads(line) for line in out[:-1]]


def check_lines(path, reference, texts, add_special_tokens, round_trip=lambda text: text):
    """memsweep encodes the one-line texts as `tokenizers` does, and decodes those ids back as it does: to
    round_trip(text) where that is not None (the text, or what the tokenizer makes of it). Returns memsweep's ids and
    the number of texts not given back as they were."""
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=add_special_tokens)]
    got = encode_lines(path, texts, *(["--add-special-tokens"] if add_special_tokens else []))
    mismatches = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, first: {mismatches[:3]}"
    changed = 0
    for text, ids, back in zip(texts, expected, decode_lines(path, expected)):
        assert back == reference.decode(ids, skip_special_tokens=False), (text, ids)
        wanted = round_trip(text)
        assert wanted is None or back == wanted, (text, ids, back)
        changed += back != text
    return got, changed


def decode_lines(tokenizer_path, id_lists):
    data = "".join(json.dumps(ids) + "\n" for ids in id_lists).encode()
    out = run(["--tokenizer", str(tokenizer_path), "--decode"], data).stdout.decode("utf-8").split("\n")
    assert out[-1] == "" and len(out) == len(id_lists) + 1
    return [json.loads(line) for line in out[:-1]]


@pytest.fixture(scope="module")
def gpt2_pair_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2_pair")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_DIR / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def gpt2_reference():
    reference = json.loads((GPT2_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = json.loads((GPT2_DIR / "vocab.json").read_text(encoding="utf-8"))
    merges = [line for line in (GPT2_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
              if line and not line.startswith("#version")]
    # The pair is the same tokenizer as tokenizer.json, whose reference therefore serves both.
    assert reference["model"]["vocab"] == vocab and reference["model"]["merges"] == merges
    return tokenizers.Tokenizer.from_file(str(GPT2_DIR / "tokenizer.json"))


CASES = ["gpt-neox-20b tokenizer.json", "gpt2 tokenizer.json", "gpt2 vocab.json+merges.txt"]


def case_setup(case, gpt2_pair_dir, gpt2_reference):
    if case.startswith("gpt-neox"):
        return NEOX_JSON, tokenizers.Tokenizer.from_file(str(NEOX_JSON)), True
    if case == "gpt2 tokenizer.json":
        return GPT2_DIR / "tokenizer.json", gpt2_reference, False
    return gpt2_pair_dir, gpt2_reference, False


@pytest.mark.parametrize("case", CASES)
def test_encode_decode_parity(case, gpt2_pair_dir, gpt2_reference, capsys):
    path, reference, nfc = case_setup(case, gpt2_pair_dir, gpt2_reference)
    texts = HAND_PICKED + benchmark_strings()
    single_line = [t for t in texts if "\n" not in t]
    multi_line = [t for t in texts if "\n" in t] + MULTILINE

    round_trip = (lambda t: unicodedata.normalize("NFC", t)) if nfc else (lambda t: t)
    check_lines(path, reference, single_line, add_special_tokens=True, round_trip=round_trip)  # GPT-2 and GPT-NeoX add none

    # Texts with newlines: one --whole-file call each to encode; decoding them is one call (JSON strings).
    file = gpt2_pair_dir / f"multiline-{case.split()[0]}.txt"
    multi_ids = []
    for text in multi_line:
        file.write_bytes(text.encode("utf-8"))
        multi_ids.append(json.loads(run(["--tokenizer", str(path), "--text-file", str(file), "--whole-file"]).stdout))
        assert multi_ids[-1] == reference.encode(text).ids, text
    expected_back = [unicodedata.normalize("NFC", t) if nfc else t for t in multi_line]
    assert decode_lines(path, multi_ids) == expected_back
    # --whole-file --decode prints the raw bytes.
    file.write_text(json.dumps(multi_ids[-1]))
    back = run(["--tokenizer", str(path), "--text-file", str(file), "--whole-file", "--decode"]).stdout
    assert back == expected_back[-1].encode("utf-8")

    with capsys.disabled():
        print(f"\n{case}: {len(single_line) + len(multi_line)} texts encoded and decoded identically "
              f"({len(single_line)} one per line, {len(multi_line)} with newlines as whole files)")


def test_gpt2_pair_matches_bpe_from_file_reference(gpt2_pair_dir):
    """Against tokenizers' own reading of vocab.json + merges.txt (which has no special token, so texts
    without <|endoftext|> only)."""
    from tokenizers import decoders, models, pre_tokenizers
    reference = tokenizers.Tokenizer(models.BPE.from_file(str(GPT2_DIR / "vocab.json"), str(GPT2_DIR / "merges.txt")))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.decoder = decoders.ByteLevel()
    texts = [t for t in HAND_PICKED if "\n" not in t and "<|endoftext|>" not in t]
    assert encode_lines(gpt2_pair_dir, texts) == [e.ids for e in reference.encode_batch(texts)]


@pytest.mark.parametrize("case", CASES)
def test_invalid_utf8_is_replaced_like_python(case, gpt2_pair_dir, gpt2_reference):
    path, reference, _ = case_setup(case, gpt2_pair_dir, gpt2_reference)
    expected = [reference.encode(b.decode("utf-8", "replace")).ids for b in INVALID_UTF8]
    assert encode_lines(path, INVALID_UTF8) == expected


@pytest.mark.parametrize("case", CASES)
def test_decode_of_ids_cutting_characters(case, gpt2_pair_dir, gpt2_reference):
    """Single ids and slices that cut multi-byte characters decode to U+FFFD where `tokenizers` does."""
    path, reference, _ = case_setup(case, gpt2_pair_dir, gpt2_reference)
    ids = reference.encode("日本語 😀 👩‍👩‍👧 é € <|endoftext|> Привет").ids
    pieces = [[i] for i in ids] + [ids[a:b] for a in range(0, len(ids), 3) for b in range(a + 1, len(ids) + 1, 4)]
    assert decode_lines(path, pieces) == [reference.decode(p, skip_special_tokens=False) for p in pieces]


def test_errors_name_the_problem(tmp_path):
    result = run(["--tokenizer", str(NEOX_JSON), "--decode"], b"[5, 50277]\n", check=False)
    assert result.returncode == 1 and b"cannot decode token id 50277" in result.stderr
    result = run(["--tokenizer", str(NEOX_JSON), "--decode"], b"[5, \n", check=False)
    assert result.returncode == 1 and b"stdin, line 1: not valid JSON" in result.stderr
    result = run(["--tokenizer", str(NEOX_JSON), "--json-strings"], b'"ok"\n[1]\n', check=False)
    assert result.returncode == 1 and b"stdin, line 2: expected a JSON string, found array" in result.stderr
    result = run(["--tokenizer", str(tmp_path)], b"", check=False)
    assert result.returncode == 1 and b"must hold tokenizer.json, or vocab.json and merges.txt" in result.stderr


def test_content_hash(gpt2_pair_dir):
    def hash_of(path):
        value = run(["--tokenizer", str(path), "--hash"]).stdout.decode().strip()
        assert len(value) == 64 and all(c in "0123456789abcdef" for c in value)
        return value
    assert hash_of(GPT2_DIR / "tokenizer.json") == hash_of(gpt2_pair_dir) == hash_of(GPT2_DIR)
    assert hash_of(NEOX_JSON) != hash_of(GPT2_DIR)


@pytest.mark.parametrize("pre_tokenizer", [{"add_prefix_space": True}, {"use_regex": False}])
def test_byte_level_options(pre_tokenizer, tmp_path):
    """The ByteLevel options the real files leave off, on a variant of GPT-2's tokenizer.json."""
    check_pre_tokenizer_variant(GPT2_DIR / "tokenizer.json", pre_tokenizer, tmp_path, HAND_PICKED)


def check_pre_tokenizer_variant(source, options, folder, texts):
    """A real tokenizer.json with its pre-tokenizer's `options` changed: memsweep encodes the one-line `texts` as
    `tokenizers` does on the same variant."""
    config = json.loads(source.read_text(encoding="utf-8"))
    config["pre_tokenizer"].update(options)
    path = folder / "tokenizer.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    reference = tokenizers.Tokenizer.from_file(str(path))
    texts = [t for t in texts if "\n" not in t]
    assert encode_lines(path, texts) == [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]


# Byte-level BPE with a Split pre-tokenizer (Sequence [Split, ByteLevel]): Llama 3 (ignore_merges, a BOS added by
# TemplateProcessing), Qwen2 (NFC, single digits), OLMo 2 (cl100k; Split Removed with invert). SentencePiece-style BPE
# (byte_fallback, fuse_unk, BOS <s>): Llama 2 (normalizer Prepend "▁" + Replace " " -> "▁"), Mistral (Metaspace first).
# Per family, what decode(encode(text)) gives back (None: no claim, only `tokenizers`' decode): Qwen2 normalizes to NFC.
# SentencePiece-style: a "▁" in the text comes back as a space; Llama 2's normalizer puts a "▁" before every piece after
# an added token, so an added token's string in the text comes back followed by a space; Mistral's Metaspace puts no
# "▁" before a text that starts with a space (or "▁") and its decoder strips one: that space is lost.
SENTENCEPIECE_ADDED = ["<s>", "</s>", "<unk>"]


def mistral_round_trip(text):
    spaced = text.replace("\u2581", " ")
    return spaced[1:] if spaced.startswith(" ") else spaced


FAMILIES = {
    "llama-3": lambda t: t,
    "qwen2": lambda t: unicodedata.normalize("NFC", t),
    "olmo-2": lambda t: t,
    "llama-2": lambda t: None if any(a in t for a in SENTENCEPIECE_ADDED) else t.replace("\u2581", " "),
    "mistral": mistral_round_trip,
}
# Added tokens inside text, for the SentencePiece-style families (whose pieces between them each get a "▁" or not).
HAND_PICKED_SENTENCEPIECE = ["<s>", "<s>x", "a</s>b", " </s> b ", "</s>▁x", "x<unk>", "<0x41>", "▁", "▁▁a",
                             "a ▁ b"]


@pytest.mark.parametrize("family", FAMILIES)
def test_families_match_tokenizers(family, capsys):
    path = SHARED / "data/tokenizers" / family / "tokenizer.json"
    vectors_file = SHARED / "data/tokenizer-vectors" / f"{family}.jsonl"
    if not path.exists() or not vectors_file.exists():
        pytest.skip(f"shared tokenizer files of {family} are absent (set MEMSWEEP_SHARED_DIR)")
    reference = tokenizers.Tokenizer.from_file(str(path))
    vectors = [json.loads(line) for line in vectors_file.read_text(encoding="utf-8").splitlines() if line]
    texts = HAND_PICKED + HAND_PICKED_SENTENCEPIECE + benchmark_strings() + [v["text"] for v in vectors]
    single_line = [t for t in texts if "\n" not in t]
    multi_line = [t for t in texts if "\n" in t] + MULTILINE

    got, changed = check_lines(path, reference, single_line, add_special_tokens=False, round_trip=FAMILIES[family])
    # --add-special-tokens: the post-processor's (Llama 3's <|begin_of_text|>, Llama 2's and Mistral's <s>; none for the
    # others), on every text: the ids are the same but for them.
    with_special = encode_lines(path, single_line, "--add-special-tokens")
    expected = reference.encode_batch(single_line, add_special_tokens=True)
    assert with_special == [e.ids for e in expected]

    # Texts with newlines in one call, as JSON strings.
    data = "".join(json.dumps(t) + "\n" for t in multi_line).encode()
    multi_ids = [json.loads(line) for line in run(["--tokenizer", str(path), "--json-strings"], data).stdout.decode().splitlines()]
    assert multi_ids == [e.ids for e in reference.encode_batch(multi_line, add_special_tokens=False)]
    ours = dict(zip(single_line + multi_line, got + multi_ids))
    # The shared vectors (made by the families' real tokenizers), against their recorded ids too.
    assert [ours[v["text"]] for v in vectors] == [v["ids"] for v in vectors]
    with capsys.disabled():
        print(f"\n{family}: {len(single_line) + len(multi_line)} texts ({len(vectors)} shared vectors, "
              f"{len(benchmark_strings())} PIQA and ARC-Easy strings) encoded as `tokenizers` does, with and without "
              f"special tokens; {len(single_line)} decoded as it does, {changed} of them not back to the text "
              f"(as the family's tokenizer loses it)")


SENTENCEPIECE_FAMILIES = ["llama-2", "mistral"]
# A folder is read as transformers' AutoTokenizer reads it. Llama 2's Hub folder names LlamaTokenizer in its
# tokenizer_config.json, whose fields are Mistral's real one (copied beside Llama 2's tokenizer.json here). Mistral's
# folder gives its file's ids (0 of these texts differ, seen once; not repeated in CI: its hash is pinned instead).
# OLMo 2's Hub folder names GPT2Tokenizer (the config is written here: the shared folder holds the tokenizer.json only),
# whose GPT-2 pre-tokenizer replaces the file's cl100k Split regex in transformers 5.x.
FOLDERS = {"llama-2": ["llama-2/tokenizer.json", "mistral/tokenizer_config.json"], "olmo-2": ["olmo-2/tokenizer.json"]}
WRITTEN_CONFIGS = {"olmo-2": {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                              "pad_token": "<|pad|>", "unk_token": "<|endoftext|>", "add_bos_token": False}}


@pytest.mark.parametrize("family", FOLDERS)
def test_folders_match_transformers(family, tmp_path, capsys):
    """memsweep on the folder against the `tokenizers` pipeline transformers 5.x builds from it (LlamaTokenizer:
    Metaspace with prepend_scheme first instead of Llama 2's Prepend + Replace; GPT2Tokenizer: GPT-2's pre-tokenizer
    instead of OLMo 2's Split): every one-line text, encoded and decoded."""
    transformers = pytest.importorskip("transformers")
    for relative in FOLDERS[family]:
        shutil.copy(SHARED / "data/tokenizers" / relative, tmp_path / pathlib.Path(relative).name)
    if family in WRITTEN_CONFIGS:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(WRITTEN_CONFIGS[family]))
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path)).backend_tokenizer
    sentencepiece = family in SENTENCEPIECE_FAMILIES
    texts = [t for t in HAND_PICKED + (HAND_PICKED_SENTENCEPIECE if sentencepiece else []) + benchmark_strings() if "\n" not in t]
    file_ids = encode_lines(SHARED / "data/tokenizers" / family / "tokenizer.json", texts)
    got, changed = check_lines(tmp_path, reference, texts, add_special_tokens=False, round_trip=(
        (lambda t: None if any(a in t for a in SENTENCEPIECE_ADDED) else mistral_round_trip(t)) if sentencepiece else (lambda t: t)))
    with capsys.disabled():
        print(f"\n{family} folder: {len(texts)} texts encoded and decoded as transformers' tokenizer does, "
              f"{sum(a != b for a, b in zip(got, file_ids))} of them to other ids than the tokenizer.json alone gives")


@pytest.mark.parametrize("family", SENTENCEPIECE_FAMILIES)
def test_sentencepiece_byte_fallback_and_invalid_utf8(family):
    """Characters outside the vocabulary as <0xNN> tokens, and slices of ids that cut them: `tokenizers`' decode gives
    one U+FFFD per byte token of a run that is not UTF-8; ill-formed input replaced as for the byte-level families."""
    path = SHARED / "data/tokenizers" / family / "tokenizer.json"
    reference = tokenizers.Tokenizer.from_file(str(path))
    ids = reference.encode("日本語 😀 👩‍👩‍👧 é € 𝔘𝔫𝔦 ꙮ <s> Привет", add_special_tokens=False).ids
    pieces = [[i] for i in ids] + [ids[a:b] for a in range(0, len(ids), 3) for b in range(a + 1, len(ids) + 1, 4)]
    assert decode_lines(path, pieces) == [reference.decode(p, skip_special_tokens=False) for p in pieces]
    expected = [reference.encode(b.decode("utf-8", "replace"), add_special_tokens=False).ids for b in INVALID_UTF8]
    assert encode_lines(path, INVALID_UTF8) == expected


@pytest.mark.parametrize("metaspace", [{"prepend_scheme": "always"}, {"prepend_scheme": "never"}, {"split": True}])
def test_metaspace_options(metaspace, tmp_path):
    """The Metaspace options Mistral's file leaves off, on a variant of it."""
    check_pre_tokenizer_variant(SHARED / "data/tokenizers/mistral/tokenizer.json", metaspace, tmp_path,
                                HAND_PICKED + HAND_PICKED_SENTENCEPIECE)
