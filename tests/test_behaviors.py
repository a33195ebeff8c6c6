"""Transition / reflection counts: positives, negatives, word boundaries, means and ratios."""

from __future__ import annotations

import json
import math

import pytest

from prerl_trl.behaviors import (
    REFLECTION_KEYWORDS,
    TRANSITION_KEYWORDS,
    behavior_metrics,
    behavior_ratio,
    count_reasoning_behaviors,
    main,
)


def test_keyword_lists_are_documented_constants():
    assert "alternatively" in TRANSITION_KEYWORDS and "however" in TRANSITION_KEYWORDS
    assert "wait" in REFLECTION_KEYWORDS and "let me verify" in REFLECTION_KEYWORDS
    assert not set(TRANSITION_KEYWORDS) & set(REFLECTION_KEYWORDS)


@pytest.mark.parametrize("keyword", TRANSITION_KEYWORDS)
def test_every_transition_keyword_counts_once(keyword):
    counts = count_reasoning_behaviors(f"We have x = 3. {keyword.capitalize()} the sum is 7.")
    assert counts == {"transition": 1, "reflection": 0}


@pytest.mark.parametrize("keyword", REFLECTION_KEYWORDS)
def test_every_reflection_keyword_counts_once(keyword):
    counts = count_reasoning_behaviors(f"We have x = 3. {keyword.upper()} the sum is 7.")
    assert counts == {"transition": 0, "reflection": 1}


def test_crafted_text_hand_counted():
    text = (
        "First, factor the polynomial. Wait, that's not right: the root is 2. Let me check: 2^2 - 4 = 0. "
        "Alternatively, we could use the quadratic formula. However, factoring is faster. "
        "On the other hand,\nanother   approach is to complete the square. Let me double-check the sign. "
        "Hmm, instead of that, let me verify by substitution."
    )
    # transition: Alternatively, However, On the other hand, another approach, instead  -> 5
    # reflection: Wait, that's not right, Let me check, Let me double-check, Hmm, let me verify -> 6
    assert count_reasoning_behaviors(text) == {"transition": 5, "reflection": 6}


@pytest.mark.parametrize(
    "text",
    [
        "Awaiting the result, the waiter kept waiting; it waits.",
        "The insteady value, howevers, checker, rechecking, hmmm.",
        "Let me compute 2 + 2 = 4. The answer is \\boxed{4}.",
        "",
        "unchecked double-checker anotherapproach",
    ],
)
def test_negatives_and_word_boundaries(text):
    assert count_reasoning_behaviors(text) == {"transition": 0, "reflection": 0}


def test_case_insensitive_curly_apostrophes_and_repeats():
    assert count_reasoning_behaviors("WAIT. wait. Wait!") == {"transition": 0, "reflection": 3}
    assert count_reasoning_behaviors("That\u2019s not right.")["reflection"] == 1
    assert count_reasoning_behaviors("HOWEVER, however")["transition"] == 2


def test_conversational_completion():
    completion = [{"role": "assistant", "content": "Wait, alternatively we try 3."}]
    assert count_reasoning_behaviors(completion) == {"transition": 1, "reflection": 1}


def test_behavior_metrics_is_mean_per_completion():
    texts = ["wait wait wait", "alternatively", "nothing here", "However, wait."]
    assert behavior_metrics(texts) == {"behaviors/transition": 2 / 4, "behaviors/reflection": 4 / 4}
    assert behavior_metrics([]) == {"behaviors/transition": 0.0, "behaviors/reflection": 0.0}


def test_behavior_ratio_from_texts_and_counts():
    before = ["wait", "nothing", "alternatively", "plain"]  # transition 0.25, reflection 0.25
    after = ["wait wait, alternatively", "instead, however, wait"]  # transition 1.5, reflection 1.5
    ratio = behavior_ratio(before, after)
    assert ratio["transition"] == pytest.approx(1.5 / 0.25)
    assert ratio["reflection"] == pytest.approx(1.5 / 0.25)
    ratio = behavior_ratio({"transition": 0.5, "reflection": 2.0}, {"behaviors/transition": 7.445,
                                                                     "behaviors/reflection": 13.08})
    assert ratio == pytest.approx({"transition": 14.89, "reflection": 6.54})
    zero = behavior_ratio(["plain"], ["wait"])
    assert math.isnan(zero["transition"]) and math.isinf(zero["reflection"])


def test_behavior_ratio_from_results_files(tmp_path, capsys):
    def results(bench):
        return {"benchmarks": bench}

    before = results({"a": {"num_completions": 10, "behaviors": {"transition": 1.0, "reflection": 2.0}},
                      "b": {"num_completions": 30, "behaviors": {"transition": 0.0, "reflection": 2.0}}})
    after = results({"a": {"num_completions": 20, "behaviors": {"transition": 3.0, "reflection": 4.0}}})
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    # weighted mean over completions: before transition (10*1 + 30*0) / 40 = 0.25, reflection 2.0
    ratio = behavior_ratio(tmp_path / "before.json", str(tmp_path / "after.json"))
    assert ratio == pytest.approx({"transition": 3.0 / 0.25, "reflection": 4.0 / 2.0})

    gens = tmp_path / "gens.jsonl"
    gens.write_text("\n".join(json.dumps({"completion": c}) for c in ["wait", "however wait"]) + "\n")
    assert behavior_ratio(gens, tmp_path / "after.json") == pytest.approx({"transition": 3.0 / 0.5,
                                                                          "reflection": 4.0 / 1.0})

    assert main([str(tmp_path / "before.json"), str(tmp_path / "after.json")]) == 0
    assert "12.00x" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json"), str(tmp_path / "after.json")]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_behavior_ratio_rejects_single_string():
    with pytest.raises(TypeError, match="list of completions"):
        behavior_ratio("wait, a single text", ["wait"])


def test_cli_prints_zero_counts_in_words(tmp_path, capsys):
    """Both counts 0 prints 'n/a (both 0)', before 0 prints 'inf (before 0)': never 'nanx' or 'infx'."""
    before = tmp_path / "before.jsonl"
    after = tmp_path / "after.jsonl"
    before.write_text(json.dumps({"completion": "the sum is 4"}) + "\n")
    after.write_text(json.dumps({"completion": "wait, the sum is 4"}) + "\n")
    assert main([str(before), str(after)]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "n/a (both 0)" in rows["transition"] and "inf (before 0)" in rows["reflection"]
    assert "nan" not in rows["transition"] and "infx" not in rows["reflection"]
