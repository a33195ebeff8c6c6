"""advantages.py and pretrain_space.py against brute-force loops and hand-built tokenizers."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from prerl_trl.advantages import (
    combine_rewards,
    estimate_advantages,
    group_advantages,
    nsr_advantages,
    sample_filter_mask,
    w_reinforce_advantages,
)
from prerl_trl.pretrain_space import build_marginal_inputs, resolve_context_token_id


def loop_advantages(rewards: list[float], size: int, scale: str) -> list[float]:
    out = []
    finite_all = [r for r in rewards if not math.isnan(r)]
    for start in range(0, len(rewards), size):
        group = rewards[start : start + size]
        finite = [r for r in group if not math.isnan(r)]
        mean = sum(finite) / len(finite) if finite else math.nan
        for r in group:
            a = r - mean
            if scale == "group":
                a = a / (statistics_std(finite) + 1e-4)
            elif scale == "batch":
                a = a / (statistics_std(finite_all) + 1e-4)
            out.append(0.0 if math.isnan(a) else a)
    return out


def statistics_std(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@pytest.mark.parametrize("scale", ["none", "group", "batch"])
def test_group_advantages_match_a_loop(scale):
    rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, math.nan, 0.5, 0.0]
    got = group_advantages(torch.tensor(rewards), 4, scale)
    expected = torch.tensor(loop_advantages(rewards, 4, scale))
    torch.testing.assert_close(got, expected)


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="num_generations"):
        group_advantages(torch.zeros(5), 4)
    with pytest.raises(ValueError, match="prerl_scale_rewards"):
        group_advantages(torch.zeros(4), 4, "std")


def test_combine_rewards_skips_none_and_keeps_unscorable_nan():
    per_func = torch.tensor([[1.0, math.nan], [math.nan, math.nan], [0.5, 1.0]])
    got = combine_rewards(per_func, torch.tensor([2.0, 3.0]))
    assert got[0] == 2.0 and math.isnan(got[1]) and got[2] == 4.0


def test_filters_and_estimators():
    adv = torch.tensor([-0.5, 0.0, 0.25])
    assert sample_filter_mask(adv, "negative").tolist() == [True, False, False]
    assert sample_filter_mask(adv, "positive").tolist() == [False, False, True]
    assert sample_filter_mask(adv, "all").tolist() == [True, True, True]
    with pytest.raises(ValueError):
        sample_filter_mask(adv, "neg")
    rewards = torch.tensor([1.0, 0.0, 1.0])
    assert nsr_advantages(rewards).tolist() == [0.0, -1.0, 0.0]
    assert w_reinforce_advantages(rewards, 0.1).tolist() == pytest.approx([0.1, -1.0, 0.1])


def test_estimate_advantages_by_name_against_hand_values():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, math.nan])  # two groups of three; one unscorable rollout
    # group mean: group 1 mean 1/3; group 2 mean over the scorable two is 1/2, and the NaN rollout gets 0
    expected = [2 / 3, -1 / 3, -1 / 3, -0.5, 0.5, 0.0]
    assert estimate_advantages(rewards, 3, "group_mean").tolist() == pytest.approx(expected)
    assert estimate_advantages(rewards, 3, "nsr").tolist() == [0.0, -1.0, -1.0, -1.0, 0.0, 0.0]
    got = estimate_advantages(rewards, 3, "w_reinforce", positive_weight=0.25).tolist()
    assert got == pytest.approx([0.25, -1.0, -1.0, -1.0, 0.25, 0.0])
    with pytest.raises(ValueError, match="reinforce"):
        estimate_advantages(rewards, 3, "reinforce")


def make_tokenizer(vocab: list[str], **special) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **special)


def test_context_token_resolution_order():
    with_bos = make_tokenizer(["<unk>", "<s>", "<|im_start|>", "</s>"], bos_token="<s>", eos_token="</s>")
    assert resolve_context_token_id(with_bos) == 1
    no_bos = make_tokenizer(["<unk>", "a", "<|im_start|>", "</s>"], eos_token="</s>")
    assert resolve_context_token_id(no_bos) == 2
    eos_only = make_tokenizer(["<unk>", "a", "</s>"], eos_token="</s>")
    assert resolve_context_token_id(eos_only) == 2
    assert resolve_context_token_id(with_bos, "</s>") == 3
    with pytest.raises(ValueError, match="prerl_context_token"):
        resolve_context_token_id(with_bos, "<|not_here|>")


def test_build_marginal_inputs():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    input_ids, attention = build_marginal_inputs(ids, mask, 42)
    assert input_ids.tolist() == [[42, 5, 6, 7], [42, 8, 9, 0]]
    assert attention.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
