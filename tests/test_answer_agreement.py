r"""math_accuracy_reward on public answer-equivalence cases, the answer forms of issue 18, and gaming.

The public cases (``tests/data/answer_equivalence_cases.jsonl``) carry the verdicts their upstream tests
publish (math-verify 0.9.0's test tables, the Hendrycks MATH ``is_equiv`` tests); the other expected values
here are facts about mathematics written by hand, each with the upstream case it comes from where it has one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from prerl_trl import rewards
from prerl_trl.rewards import math_accuracy_reward
from prerl_trl.rewards.extraction import answer_candidates, gold_from_answer

PUBLIC_CASES = Path(__file__).parent / "data" / "answer_equivalence_cases.jsonl"
MV = "math-verify 0.9.0 tests/"


@pytest.fixture(scope="module", autouse=True)
def _warm_pool():
    rewards.warmup_verifier()
    yield


def _load() -> list[dict]:
    return [json.loads(line) for line in PUBLIC_CASES.read_text().splitlines() if line.strip()]


def _source(case: dict) -> str:
    return case["source"].split("==")[0].split("/")[0]


def test_public_cases_name_their_sources():
    cases = _load()
    assert len(cases) >= 200
    assert Counter(_source(c) for c in cases).keys() == {"math-verify", "hendrycks"}
    for case in cases:
        assert case["expected"] in (0, 1) and case["completion"] and case["gold"]
        assert "math-verify==0.9.0 tests/" in case["source"] or "hendrycks/math@985bdc1" in case["source"]


def _plain_math_verify(cases: list[dict]) -> list[int]:
    """math-verify's own parse + verify with its defaults, on the same strings."""
    from math_verify import parse, verify

    verdicts = []
    for case in cases:
        try:
            verdicts.append(int(bool(verify(parse(case["gold"]), parse(case["completion"])))))
        except Exception:  # noqa: BLE001 - its own timeouts and parser errors count as "not equal"
            verdicts.append(0)
    return verdicts


def test_agreement_with_published_verdicts_is_at_least_plain_math_verify():
    cases = _load()
    ours = math_accuracy_reward([c["completion"] for c in cases], answer=[c["gold"] for c in cases])
    theirs = _plain_math_verify(cases)
    agree_ours: Counter = Counter()
    agree_theirs: Counter = Counter()
    for case, o, t in zip(cases, ours, theirs, strict=True):
        agree_ours[_source(case)] += int(o == 1.0) == case["expected"]
        agree_theirs[_source(case)] += t == case["expected"]
    for source in ("math-verify", "hendrycks"):
        assert agree_ours[source] >= agree_theirs[source], (source, agree_ours, agree_theirs)
    assert sum(agree_ours.values()) >= 0.95 * len(cases)


# (completion, gold, expected): each kind of issue 18, with the upstream case it reproduces
KINDS: list[tuple[str, str, float]] = [
    # several boxes that together are the answer (MV test_open_thoughts.py, test_numina_cases.py)
    (r"$$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}$$", "(3, 3), (1, 1)", 1.0),
    (r"$$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 2)}$$", "(3, 3), (1, 1)", 0.0),
    (r"$$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}$$", "(1, 1)", 1.0),  # the final box, as always
    (r"$\boxed{-2,1}$.", r"\(\boxed{1}\) and \(\boxed{-2}\).", 1.0),
    (r"\(\boxed{1}\) and \(\boxed{-2}\).", "-2, 1", 1.0),
    (r"\(\boxed{1}\) and \(\boxed{-3}\).", "-2, 1", 0.0),
    (r"$\boxed{1,2}$", r"\boxed{1} papers and \boxed{2} bins", 1.0),
    (r"$\boxed{1,2}$", r"\boxed{1} no no no no no \boxed{2}", 0.0),  # the gold's final box is 2
    # the Minerva format without a box (MV test_all.py::test_math_extraction_additional_cases)
    ("So he has $10,455. Final Answer: The final answer is $10,455$. I hope it is correct.", "10455", 1.0),
    ("So he has $10,455. Final Answer: The final answer is $10,456$. I hope it is correct.", "10455", 0.0),
    ("Anna pays $7.78. Final Answer: The final answer is 7.78.", "7.78", 1.0),
    (r"We get \boxed{3}. Final Answer: The final answer is $4$. I hope it is correct.", "4", 1.0),
    (r"We get \boxed{3}. Let me check that the final answer is correct: yes.", "3", 1.0),
    ("The answer is 5.", "5", 0.0),  # neither a box nor a final-answer line
    # a decimal comma (MV test_all.py::test_number_extraction); three digits after it group thousands
    (r"\boxed{1000,99}", "1000.99", 1.0),
    (r"\boxed{1.22}", "1,22", 1.0),
    (r"\boxed{0,111}", "0.111", 1.0),
    (r"\boxed{1,222}", "1.222", 0.0),
    (r"\boxed{1,222}", "1222", 1.0),
    (r"\boxed{1000,98}", "1000.99", 0.0),
    # \mathrm{e} is Euler's number (MV test_yujianll.py)
    (r"\boxed{1 - \frac{1}{\mathrm{e}}}", r"1 - e^{-1}", 1.0),
    (r"\boxed{1 + \frac{1}{\mathrm{e}}}", r"1 - \frac{1}{\mathrm{e}}", 0.0),
    # systems and named equations (MV test_open_thoughts.py, test_numina_cases.py)
    (
        r"\($y_1 = \boxed{-2(x - 1)^2 + 5} \) and \( y_2 = \boxed{3(x + 2)^2 - 2} \)",
        r"$y_{1}=-2 x^{2}+4 x+3, y_{2}=3 x^{2}+12 x+10$",
        1.0,
    ),
    (
        r"\($y_1 = \boxed{-2(x - 1)^2 + 5} \) and \( y_2 = \boxed{3(x + 2)^2 + 2} \)",
        r"$y_{1}=-2 x^{2}+4 x+3, y_{2}=3 x^{2}+12 x+10$",
        0.0,
    ),
    (r"\boxed{W(n) = 1 \text{ and } W(n) = -1}", r"W(n) = 1, W(n) = -1", 1.0),
    (r"\boxed{W(n) = 1 \text{ and } W(n) = 2}", r"W(n) = 1, W(n) = -1", 0.0),
    (r"\boxed{x = -5,\ p = \frac{14}{3}}", r"-5, \frac{14}{3}", 1.0),
    # order: a bare list is the set of answers MATH asks for "separated by commas"; a tuple is ordered
    (r"\boxed{4, 10, -2}", "10, 4, -2", 1.0),
    (r"\boxed{(4, 10, -2)}", "(10, 4, -2)", 0.0),
    (r"\boxed{(10, 4, -2)}", "(10, 4, -2)", 1.0),
]


def test_issue_18_kinds():
    got = math_accuracy_reward([c for c, _, _ in KINDS], answer=[g for _, g, _ in KINDS])
    wrong = [(c, g, e, r) for (c, g, e), r in zip(KINDS, got, strict=True) if r != e]
    assert not wrong, "completion, gold, expected, got:\n" + "\n".join(map(repr, wrong))


# Completions that offer every candidate for a single-valued gold: none may score.
GAMING: list[str] = [
    r"\boxed{3}, \boxed{4}, \boxed{5}",
    r"$\boxed{3}$ and $\boxed{5}$",
    r"$\boxed{3}$ or $\boxed{5}$",
    r"\boxed{3} \quad \boxed{4} \quad \boxed{5}",
    r"\(\boxed{3}\), \(\boxed{4}\), \(\boxed{5}\)",
    r"\boxed{3, 4, 5}",
    r"\boxed{5, 3}",
    r"\boxed{\{3, 4, 5\}}",
    r"\boxed{3 \text{ or } 5}",
    r"\boxed{3 \text{ and } 5}",
    r"\boxed{x = 3 \text{ or } x = 5}",
    r"\boxed{x = 3, x = 5}",
    r"\boxed{3; 4; 5}",
    r"\boxed{(3, 5)}",
    r"\boxed{[3, 5]}",
    r"\boxed{\pm 5}",
    "Final Answer: The final answer is 3, 4, 5. I hope it is correct.",
    "Final Answer: The final answer is $3$ or $5$. I hope it is correct.",
    r"Final Answer: The final answer is $\{3, 5\}$. I hope it is correct.",
    r"\boxed{5} or maybe \boxed{3}, \boxed{4}",
]


@pytest.mark.parametrize(("gold", "right"), [("5", "5"), (r"\frac{10}{2}", "5"), ("x = 5", "5"), ("3", "3")])
def test_every_candidate_at_once_scores_zero(gold, right):
    got = math_accuracy_reward(GAMING, answer=[gold] * len(GAMING))
    assert got == [0.0] * len(GAMING), [c for c, r in zip(GAMING, got, strict=True) if r != 0.0]
    # the right answer, given once, does score: the zeros above come from the extra candidates
    once = [rf"so \boxed{{{right}}}", f"Final Answer: The final answer is ${right}$. I hope it is correct."]
    assert math_accuracy_reward(once, answer=[gold] * 2) == [1.0, 1.0]


def test_answer_readings():
    text = r"First \boxed{3}. Wait, that is wrong; the answer is \boxed{4}."
    assert answer_candidates(text, several=False) == ["4"]
    assert answer_candidates(text, several=True) == ["4", "3, 4"]
    assert answer_candidates(r"\boxed{3}, \boxed{4}", several=True) == ["3, 4"]  # one run, one reading
    assert answer_candidates("no answer") == []
    assert answer_candidates(r"\boxed{2}. Final Answer: The final answer is $\frac{1}{2}$. I hope it is correct.") == [
        r"\frac{1}{2}"
    ]
    assert answer_candidates("The final answer is \\(x+1\\).") == ["x+1"]
    many = " then ".join(rf"\boxed{{{i}}}" for i in range(12))
    assert answer_candidates(many, several=True) == ["11"]  # too many boxes to read them together
    assert gold_from_answer(r"\boxed{1} papers and \boxed{2} bins") == "1, 2"
    assert gold_from_answer(r"\boxed{1} no no no no no \boxed{2}") == "2"
    assert gold_from_answer("$$(3, 3), (1, 1)$$") == "(3, 3), (1, 1)"
    assert gold_from_answer(r"\(x^2\)") == "x^2"
