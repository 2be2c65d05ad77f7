"""Greedy generation with a KV cache vs transformers' generate(do_sample=False, max_new_tokens=n
[, min_new_tokens=n]) — the paper's call — token for token, for GPT-NeoX and GPT-Neo, with and without
short-circuit, EOS mask on and off, prompts batched with left padding on our side and alone on theirs.
The output head has exact ties built in (two identical rows: the lower id must win) and a favoured EOS row
(so masking it matters). Where the two disagree, the test prints our top-two gap at the first difference and
passes only if it is below EPSILON."""
import json

import pytest
import torch

import functools

from memsweep_testing import (load_reference, make_gpt_neo, make_gpt_neox, make_llama, reference_intervention, run_memsweep,
                              write_tokens)

NEW_TOKENS = 12
EPSILON = 1e-4  # float32 logits: a smaller top-two gap is a near-tie that rounding may break either way
EOS, TIED_LOW, TIED_HIGH = 0, 3, 7
PROMPTS = [[5, 17, 3, 88, 42, 42, 7], [1], [60, 2, 2, 2, 9, 31, 77, 13, 5, 0, 96, 44, 18], [11, 12]]
INTERVENTIONS = {"baseline": ((), ()), "sc_middle": ((1,), ()), "sc_last_zero_first": ((3,), (0,))}


# Llama with 4 query heads on 2 KV heads and rope_type llama3; Mistral with a window (6) shorter than prompt and
# generation; OLMo 2 (norms after the sublayers, q/k norms).
MAKERS = {"gpt_neox": make_gpt_neox, "gpt_neo": make_gpt_neo,
          "llama_gqa2_llama3": functools.partial(make_llama, rope_parameters=dict(
              rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=200)),
          "mistral_window6": functools.partial(make_llama, family="mistral", sliding_window=6),
          "olmo2": functools.partial(make_llama, family="olmo2")}


@pytest.fixture(scope="module", params=list(MAKERS))
def checkpoint(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    model = MAKERS[request.param](directory, seed=11)
    with torch.no_grad():
        head = model.get_output_embeddings().weight  # GPT-Neo's head is tied to wte: the input embeddings change alike
        head[TIED_LOW] *= 1.6
        head[TIED_HIGH] = head[TIED_LOW]
        head[EOS] = head[TIED_LOW] * 1.05  # EOS wins where the tied pair would: masking it changes the output
    model.save_pretrained(directory)
    return directory, load_reference(directory)


def reference_generate(model, prompt, mask_eos, short, zero, with_gaps=False):
    """transformers' greedy tokens, and with_gaps: the top-1 minus top-2 of each step's scores (the logits after its
    logits processors: EOS at -inf under min_new_tokens), from torch.topk."""
    kwargs = dict(do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=EOS, output_scores=True,
                  return_dict_in_generate=True)
    if mask_eos:
        kwargs["min_new_tokens"] = NEW_TOKENS
    with reference_intervention(model, short, zero), torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), **kwargs)
    tokens = out.sequences[0, len(prompt):].tolist()
    if not with_gaps:
        return tokens
    return tokens, [float(top[0, 0] - top[0, 1]) for top in (scores.float().topk(2, -1).values for scores in out.scores)]


@pytest.mark.parametrize("intervention", list(INTERVENTIONS))
@pytest.mark.parametrize("mask_eos", [True, False], ids=["eos_masked", "eos_allowed"])
def test_greedy_generation_matches_transformers(checkpoint, intervention, mask_eos, tmp_path):
    directory, model = checkpoint
    short, zero = INTERVENTIONS[intervention]
    args = ["generate", "--model", directory, "--tokens", write_tokens(tmp_path / "p.json", PROMPTS),
            "--new-tokens", NEW_TOKENS, "--batch-size", 3, "--gaps"]
    if short:
        args += ["--short-circuit", ",".join(map(str, short))]
    if zero:
        args += ["--zero-attention", ",".join(map(str, zero))]
    if mask_eos:
        args.append("--no-eos")
    ours = json.loads(run_memsweep(*args).stdout)
    ties = eos_seen = 0
    worst_gap = 0.0
    for prompt, row in zip(PROMPTS, ours):
        reference, reference_gaps = reference_generate(model, prompt, mask_eos, short, zero, with_gaps=True)
        tokens, gaps = row["tokens"], row["top2_gap"]
        assert len(tokens) == NEW_TOKENS
        if mask_eos:
            assert EOS not in tokens
        else:  # transformers stops after the first EOS; we go on: compare up to it
            assert len(reference) == NEW_TOKENS or reference[-1] == EOS
            eos_seen += EOS in reference
        ties += sum(1 for t, g in zip(tokens, gaps) if g == 0.0)
        for step, (mine, theirs) in enumerate(zip(tokens, reference)):
            # Until the first difference both decode the same sequence: the recorded gaps are topk's.
            worst_gap = max(worst_gap, abs(gaps[step] - reference_gaps[step]))
            assert abs(gaps[step] - reference_gaps[step]) < EPSILON, (step, gaps[step], reference_gaps[step])
            if mine != theirs:
                print(f"{intervention} prompt {prompt}: first difference at step {step}: ours {mine}, "
                      f"transformers {theirs}, our top-two gap {gaps[step]:.3g}")
                assert gaps[step] < EPSILON
                break
            if mine in (TIED_LOW, TIED_HIGH):
                assert mine == TIED_LOW  # an exact tie goes to the lowest id, in both
    print(f"{directory.name} {intervention} mask_eos={mask_eos}: {ties} exact ties, EOS generated by transformers in "
          f"{eos_seen} of {len(PROMPTS)} prompts; top-two gaps within {worst_gap:.2g} of transformers' topk")
    if intervention == "baseline" and mask_eos:
        assert ties > 0, "the tied rows were never chosen: the tie case is not exercised"
    if intervention == "baseline" and not mask_eos:
        assert eos_seen > 0, "EOS never generated: the EOS mask is not exercised"


def test_generation_does_not_depend_on_batch_size(checkpoint, tmp_path):
    directory, _ = checkpoint
    prompts = write_tokens(tmp_path / "p.json", PROMPTS)
    outputs = [json.loads(run_memsweep("generate", "--model", directory, "--tokens", prompts, "--new-tokens",
                                       NEW_TOKENS, "--batch-size", size, "--no-eos").stdout) for size in (1, 2, 4)]
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize("mask_eos", [True, False], ids=["eos_masked", "eos_allowed"])
def test_exact_ties_go_to_the_lowest_id(mask_eos, tmp_path):
    """Every step is an exact tie at the top: an output head of zeros but for rows 3 and 70 equal to some r and rows 5
    and 9 equal to -r, so the maximum is shared by 3 and 70 (h.r > 0) or by 5 and 9 (h.r < 0). Greedy decoding must
    take the lower id at every step, as torch.argmax in transformers' generate does; topk does not promise which
    tied index comes first (on a CPU it often gives the higher one). memsweep finds the maximum block by block (64
    ids each; the vocabulary of 97 ends in a short block): one pair shares a block, the other does not."""
    model = make_gpt_neox(tmp_path / "tied", seed=3)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        row = head[TIED_HIGH].clone()
        head.zero_()
        head[TIED_LOW] = head[70] = row
        head[5] = head[9] = -row
    model.save_pretrained(tmp_path / "tied")
    reference = load_reference(tmp_path / "tied")
    args = ["generate", "--model", tmp_path / "tied", "--tokens", write_tokens(tmp_path / "p.json", PROMPTS),
            "--new-tokens", NEW_TOKENS, "--batch-size", 3, "--gaps"] + (["--no-eos"] if mask_eos else [])
    ours = json.loads(run_memsweep(*args).stdout)
    chosen = set()
    for prompt, row in zip(PROMPTS, ours):
        assert all(gap == 0.0 for gap in row["top2_gap"])  # every step is a tie
        theirs = reference_generate(reference, prompt, mask_eos, (), ())
        assert row["tokens"][:len(theirs)] == theirs
        chosen.update(row["tokens"])
    print(f"mask_eos={mask_eos}: tokens chosen {sorted(chosen)}")
    assert chosen <= {TIED_LOW, 5} and chosen, chosen
