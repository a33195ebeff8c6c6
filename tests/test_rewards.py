r"""Tests for prerl_trl.rewards: a table of hand-written math truths, robustness, and TRL wiring.

Every expected value below is a fact about mathematics (or about which \boxed{} is final), written
by hand; none was copied from the verifier's output.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import threading
import time

import pytest

from prerl_trl import rewards
from prerl_trl.rewards import equivalence, extract_boxed_answer, format_reward, math_accuracy_reward
from prerl_trl.rewards import pool as pool_module

LIMIT = 1.0  # seconds per verification in the robustness tests
# A hang guard, not a timing claim: a call may wait for a killed worker's replacement to boot
# (several seconds on a loaded machine) before its own 1 s deadline starts.
HANG_GUARD = 20 * LIMIT

# (prediction inside \boxed{}, gold answer, expected reward)
CASES: list[tuple[str, str, float]] = [
    # fractions and decimals
    ("0.5", r"\frac12", 1.0),
    (r"\frac12", "0.5", 1.0),
    (r"\frac{1}{2}", "1/2", 1.0),
    ("1/2", r"\frac{1}{2}", 1.0),
    ("0.25", r"\frac14", 1.0),
    (r"\frac{2}{4}", r"\frac12", 1.0),
    ("-0.75", r"-\frac34", 1.0),
    (r"\frac{-3}{4}", r"-\frac{3}{4}", 1.0),
    ("0.33", r"\frac13", 0.0),
    (r"\frac{1}{3}", "0.3", 0.0),
    (r"\frac{3}{4}", r"-\frac34", 0.0),
    # \dfrac and \tfrac
    (r"\dfrac{5}{6}", r"\frac56", 1.0),
    (r"\frac{5}{6}", r"\tfrac{5}{6}", 1.0),
    (r"\dfrac{6}{5}", r"\frac56", 0.0),
    # radicals
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt2}{2}", 1.0),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt2}", 1.0),
    (r"\sqrt{8}", r"2\sqrt{2}", 1.0),
    (r"2\sqrt2", r"\sqrt{8}", 1.0),
    (r"\sqrt[3]{8}", "2", 1.0),
    (r"\sqrt{3}", r"3\sqrt{3}", 0.0),
    (r"3\sqrt{2}", r"2\sqrt{3}", 0.0),
    # "x = 5" against "5"
    ("x = 5", "5", 1.0),
    ("5", "x=5", 1.0),
    ("y = 2x + 3", "2x+3", 1.0),
    ("x = 6", "5", 0.0),
    # percent
    (r"50\%", "50", 1.0),
    ("50", r"50\%", 1.0),
    (r"25\%", "0.25", 1.0),
    (r"40\%", "50", 0.0),
    # degrees
    (r"30^\circ", "30", 1.0),
    ("30", r"30^{\circ}", 1.0),
    (r"45^\circ", "30", 0.0),
    # thousands separators
    ("1,000", "1000", 1.0),
    ("1000", "1,000", 1.0),
    ("1,000,000", "1000000", 1.0),
    ("1,001", "1000", 0.0),
    # units and currency
    (r"5\text{ cm}", "5", 1.0),
    (r"12 \text{ inches}", "12", 1.0),
    (r"\$18.90", "18.9", 1.0),
    ("18.90", r"\$18.90", 1.0),
    (r"\$1,250", "1250", 1.0),
    (r"\$19", "18.9", 0.0),
    (r"6\text{ cm}", "5", 0.0),
    # intervals and sets
    ("(1, 3]", "(1,3]", 1.0),
    (r"(-\infty, 0) \cup (1, \infty)", r"(-\infty,0)\cup(1,\infty)", 1.0),
    (r"[1,3) \cup (4,5]", r"[1,3)\cup(4,5]", 1.0),
    (r"x \in [2,5)", "[2,5)", 1.0),
    (r"\{2,1\}", r"\{1,2\}", 1.0),
    (r"\{1,2\}", r"\{2, 1\}", 1.0),
    ("[1,3]", "(1,3]", 0.0),
    ("(1,3)", "(1,3]", 0.0),
    (r"\{1,2,3\}", r"\{1,2\}", 0.0),
    # matrices and vectors
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 1.0),
    (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 1.0),
    (r"\begin{pmatrix}1&2\\4&3\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0.0),
    (r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 0.0),
    # symbolic expressions up to algebraic equivalence
    ("x^2+2x+1", "(x+1)^2", 1.0),
    ("(x+1)^2", "x^2 + 2x + 1", 1.0),
    ("3+2x", "2x+3", 1.0),
    ("x^2-1", "(x-1)(x+1)", 1.0),
    (r"\frac{x^2-1}{x-1}", "x+1", 1.0),
    ("2y+3", "2x+3", 0.0),
    ("x^2+1", "(x+1)^2", 0.0),
    # mixed numbers
    (r"2\frac{1}{2}", r"\frac52", 1.0),
    (r"\frac{5}{2}", r"2\frac12", 1.0),
    ("2.5", r"2\frac{1}{2}", 1.0),
    ("2 1/2", "2.5", 1.0),
    (r"2\frac{1}{3}", r"\frac52", 0.0),
    ("1", r"2\frac12", 0.0),  # read as a product, 2 * 1/2 would be 1
    # text choices and text answers
    ("B", r"\text{(B)}", 1.0),
    ("(B)", r"\text{(B)}", 1.0),
    (r"\textbf{(B)}", "B", 1.0),
    (r"\textbf{(B) }12", r"\text{(B)}", 1.0),
    (r"\text{(C)}", r"\text{(B)}", 0.0),
    ("(A) or (B)", r"\text{(B)}", 0.0),
    (r"\text{Monday}", r"\text{Monday}", 1.0),
    ("monday", r"\text{Monday}", 1.0),
    (r"\text{dynamo}", r"\text{Monday}", 0.0),
    # identities, sets written as lists, rounding
    (r"\sin^2x+\cos^2x", "1", 1.0),
    ("1, 2", r"\{2,1\}", 1.0),
    ("0.333333", r"\frac13", 1.0),
    ("(1, 2)", r"\{1,2\}", 0.0),  # an interval or a pair is not a set
    (r"\{1,2\}", "(1,2)", 0.0),
    # integers and constants
    ("42", "42", 1.0),
    ("41", "42", 0.0),
    ("-7", "-7", 1.0),
    ("7", "-7", 0.0),
    ("42.0", "42", 1.0),
    (r"\pi", r"\pi", 1.0),
    ("3.14", r"\pi", 0.0),
    (r"\infty", r"\infty", 1.0),
    # a comma followed by a space separates list items; without the space it groups thousands
    ("32, 349", "32349", 0.0),
    ("3, 500", "3500", 0.0),
    ("32,349", "32349", 1.0),
    (r"32,\!349", "32349", 1.0),
    ("32349", "32, 349", 0.0),
    ("349, 32", "32, 349", 1.0),
    # Euler's number written upright
    (r"\mathrm{e}^{2}", "e^2", 1.0),
    ("e^2", r"\mathrm{e}^{2}", 1.0),
    ("2e", r"2\mathrm{e}", 1.0),
    ("2", r"2\mathrm{e}", 0.0),
    (r"\frac{1}{\mathrm{e}}", r"e^{-1}", 1.0),
    # matrix rows broken by one backslash, as in golds that went through the MATH normalisation
    (r"\begin{pmatrix} 4 \\ -3 \end{pmatrix}", r"\begin{pmatrix}4\-3\end{pmatrix}", 1.0),
    (r"\begin{pmatrix} -3 \\ 4 \end{pmatrix}", r"\begin{pmatrix}4\-3\end{pmatrix}", 0.0),
    (r"\begin{pmatrix}1&2500\\0&1\end{pmatrix}", r"\begin{pmatrix}1&2500\0&1\end{pmatrix}", 1.0),
    # thousands separators inside a fraction, a leading \approx in the gold
    (r"\frac{1}{29322216}", r"\frac{1}{29,322,216}", 1.0),
    (r"\dfrac{2469}{20000}", r"\frac{2469}{20,000}", 1.0),
    ("0.12345", r"\frac{2469}{20,000}", 1.0),
    ("8.24", r"\approx8.24", 1.0),
    ("8.25", r"\approx8.24", 0.0),
    # hedges: "5 or 6" is not the answer 5
    (r"5\text{ or }6", "5", 0.0),
]


@pytest.fixture(scope="module", autouse=True)
def _warm_pool():
    rewards.warmup_verifier()
    yield


def _completion(pred: str) -> str:
    return f"Let me work it out step by step. So the final answer is $\\boxed{{{pred}}}$."


def test_table_has_enough_cases():
    assert len(CASES) >= 60
    assert {e for *_, e in CASES} == {0.0, 1.0}


def test_equivalence_table():
    completions = [_completion(pred) for pred, _, _ in CASES]
    got = math_accuracy_reward(completions, answer=[gold for _, gold, _ in CASES])
    wrong = [(p, g, e, r) for (p, g, e), r in zip(CASES, got, strict=True) if r != e]
    assert not wrong, "pred, gold, expected, got:\n" + "\n".join(map(repr, wrong))


def test_fast_path_agrees_with_math_verify():
    """Pairs decided in the calling process get the verdict math-verify itself would give."""
    equivalence.worker_setup()  # math-verify in this process, as in a worker
    decided = 0
    for pred, gold, _ in CASES:
        gold, pred = equivalence.prepare(gold), equivalence.prepare(pred)
        fast = equivalence.fast_verdict(gold, pred)
        if fast is None or equivalence.choice_letter(gold) is not None:  # choices: "(B) 12" is ours alone
            continue
        decided += 1
        assert equivalence.worker_verify(gold, pred) == fast, (pred, gold)
    assert decided >= 20


def test_answers_inside_worked_solutions():
    solution = r"We find $x = \frac{1}{2}$, and since $2x = 1$ the answer is $\boxed{\dfrac{1}{2}}$."
    gsm8k = "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"
    got = math_accuracy_reward(
        [_completion("0.5"), _completion("0.6"), _completion("7"), _completion("8")],
        solution=[solution, solution, gsm8k, gsm8k],
    )
    assert got == [1.0, 0.0, 1.0, 0.0]


def test_numeric_answer_cells():
    assert math_accuracy_reward([_completion("27"), _completion("28")], answer=[27.0, 27]) == [1.0, 0.0]


def test_final_boxed_answer_is_scored():
    text = r"First guess \boxed{3}. Wait, that is wrong; the answer is \boxed{4}."
    assert math_accuracy_reward([text, text], answer=["4", "3"]) == [1.0, 0.0]
    assert extract_boxed_answer(r"\boxed{\frac{1}{2}} and \fbox{\{1,2\}}") == r"\{1,2\}"
    assert extract_boxed_answer(r"so \boxed 7.") == "7."
    assert extract_boxed_answer("no answer here") is None
    assert extract_boxed_answer(r"\boxed{12} then cut off \boxed{3") == "12"


def test_conversational_completions_use_last_assistant_message():
    conv = [
        [{"role": "assistant", "content": _completion("12")}],
        [
            {"role": "user", "content": r"\boxed{13}"},
            {"role": "assistant", "content": _completion("7")},
            {"role": "tool", "content": "ok"},
        ],
    ]
    assert math_accuracy_reward(conv, answer=["12", "7"]) == [1.0, 1.0]


def test_unparseable_gold_is_none_and_missing_box_is_zero():
    got = math_accuracy_reward(
        [_completion("5"), _completion("5"), "The answer is 5.", _completion("5")],
        answer=["", "???", "5", None],
    )
    assert got == [None, None, 0.0, None]
    long_solution = "A worked solution that never states its final answer in a box. " * 5
    assert math_accuracy_reward([_completion("5")], solution=[long_solution]) == [None]


def test_mismatched_lengths_and_missing_gold_raise():
    with pytest.raises(ValueError, match=r"`completions` has 2 items but `answer` has 1"):
        math_accuracy_reward(["a", "b"], answer=["1"])
    with pytest.raises(ValueError, match=r"`solution` has 3"):
        math_accuracy_reward(["a", "b"], solution=["1", "2", "3"])
    with pytest.raises(ValueError, match="answer="):
        math_accuracy_reward(["a"])


def test_trl_style_call_and_metrics():
    metrics: dict[str, float] = {}
    extras: dict[str, list] = {}
    got = math_accuracy_reward(
        prompts=["p"] * 3,
        completions=[
            [{"role": "assistant", "content": _completion("2")}],
            [{"content": "no box"}],
            _completion("3"),
        ],
        completion_ids=[[1], [2], [3]],
        answer=["2", "2", "2"],
        problem=["x", "y", "z"],
        trainer_state=object(),
        log_metric=metrics.__setitem__,
        log_extra=extras.__setitem__,
    )
    assert got == [1.0, 0.0, 0.0]
    assert metrics["math_verify/no_answer"] == 1.0
    assert metrics["math_verify/timeouts"] == 0.0
    assert extras["boxed_answer"] == ["2", "[none]", "3"]


def test_empty_box_is_no_answer():
    metrics: dict[str, float] = {}
    assert math_accuracy_reward(
        [r"\boxed{}", r"\boxed{ }"], answer=["1", "1"], log_metric=metrics.__setitem__
    ) == [
        0.0,
        0.0,
    ]
    assert metrics["math_verify/no_answer"] == 2.0
    assert format_reward([r"put it in \boxed{}"]) == [0.0]


def test_format_reward():
    assert format_reward([_completion("1"), "no box", [{"role": "assistant", "content": r"\boxed{x}"}]]) == [
        1.0,
        0.0,
        1.0,
    ]


ADVERSARIAL = {
    "factorial_tower": r"\boxed{(10^{10^{10^{10}}})!}",
    "exponent_tower": r"\boxed{" + "9^" * 60 + "9}",
    "integral_tower": r"\boxed{\int_0^{x^{x^{x^{x}}}} e^{t^{t^{t}}}\,dt}",
    "garbage_1e5": r"\boxed{" + "x+" * 50_000 + "}",
    "garbage_no_box": "}{\\" * 33_334,
    "unbalanced": r"\boxed{\frac{1}{2" + "{" * 1000,
    "deep_nesting": r"\boxed{" + r"\frac{1}{" * 150 + "2" + "}" * 150 + "}",
    "invalid_unicode": "\\boxed{\ud800\udfff\x00\uffff5}",
    "many_boxes": r"\boxed{" * 20_000,
}


def _timed_reward(text: str, metrics: dict | None = None) -> tuple[list, float]:
    start = time.monotonic()
    got = math_accuracy_reward(
        [text],
        answer=["5"],
        timeout_seconds=LIMIT,
        log_metric=None if metrics is None else metrics.__setitem__,
    )
    return got, time.monotonic() - start


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_main_thread(name):
    got, elapsed = _timed_reward(ADVERSARIAL[name])
    assert got == [0.0]
    assert elapsed <= HANG_GUARD, f"{name} took {elapsed:.2f}s"


def test_timeout_is_enforced_and_pool_recovers():
    metrics: dict[str, float] = {}
    got, elapsed = _timed_reward(ADVERSARIAL["factorial_tower"], metrics)
    assert got == [0.0] and elapsed <= HANG_GUARD
    assert metrics["math_verify/timeouts"] == 1.0  # stopped by the limit, not by luck
    # the killed worker was replaced: ordinary answers still verify
    assert math_accuracy_reward([_completion(r"\frac{\sqrt2}{2}")], answer=[r"\frac{1}{\sqrt2}"]) == [1.0]


def test_adversarial_from_worker_threads():
    results: dict[str, tuple[list, float]] = {}

    def run(name: str) -> None:
        results[name] = _timed_reward(ADVERSARIAL[name])

    for batch in (["factorial_tower", "garbage_1e5"], ["integral_tower", "invalid_unicode"]):
        threads = [threading.Thread(target=run, args=(n,)) for n in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert set(results) == {"factorial_tower", "garbage_1e5", "integral_tower", "invalid_unicode"}
    for name, (got, elapsed) in results.items():
        assert got == [0.0], name
        assert elapsed <= HANG_GUARD, f"{name} took {elapsed:.2f}s in a thread"


def test_mixed_batch_keeps_good_verdicts_next_to_a_timeout():
    texts = [
        _completion("0.5"),
        ADVERSARIAL["factorial_tower"],
        _completion(r"x \in (1,3]"),
        _completion("4"),
    ]
    start = time.monotonic()
    got = math_accuracy_reward(texts, answer=[r"\frac12", "5", "(1,3]", "5"], timeout_seconds=LIMIT)
    assert got == [1.0, 0.0, 1.0, 0.0]
    assert time.monotonic() - start <= HANG_GUARD


def test_pool_is_bounded_and_reused():
    pool = pool_module.get_pool()
    math_accuracy_reward([_completion(f"{i}+x") for i in range(12)], answer=["x+3"] * 12)
    assert pool_module.get_pool() is pool
    assert pool.count <= pool.capacity == pool.size + 1 and pool.busy == 0
    assert 1 <= pool.size <= (os.cpu_count() or 1)


def _reward_in_dataloader_worker(_: int) -> float | None:
    # a pair the in-process pre-check cannot decide, so the worker pool must answer
    gold, pred = r"\frac{1}{\sqrt2}", r"\frac{\sqrt{2}}{2}"
    assert equivalence.fast_verdict(gold, pred) is None
    return math_accuracy_reward([_completion(pred)], answer=[gold], timeout_seconds=LIMIT)[0]


def test_works_inside_dataloader_workers():
    torch = pytest.importorskip("torch")

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> float:
            return _reward_in_dataloader_worker(i)

    loader = torch.utils.data.DataLoader(Rows(), batch_size=None, num_workers=1, timeout=60)
    assert [float(x) for x in loader] == [1.0, 1.0]


# ------------------------------------------------------------------------------------ several boxes
# (completion, gold, expected): adjacent boxes separated only by commas, spaces, "$" or "and" are one
# answer, in the completion and in the gold; a box followed by words is superseded by a later one.
MULTI_BOX_CASES: list[tuple[str, str, float]] = [
    (r"The roots are $\boxed{1}, \boxed{2}$.", r"\{1,2\}", 1.0),
    (r"The roots are $\boxed{1}$ and $\boxed{2}$.", "1, 2", 1.0),
    (r"The roots are $\boxed{2}, \boxed{1}$.", r"\boxed{1, 2}", 1.0),
    (r"So $\boxed{1, 2}$.", r"\boxed{1}, \boxed{2}", 1.0),
    (r"So $\boxed{1, 2}$.", r"\boxed{1} and \boxed{3}", 0.0),
    # boxes spread over the text count together only when together they are the gold (issue 18)
    (r"First \boxed{3}. Wait, that is wrong; the answer is \boxed{4}.", "3, 4", 1.0),
    (r"First \boxed{3}. Wait, that is wrong; the answer is \boxed{4}.", "4", 1.0),
    (r"First \boxed{3}. Wait, that is wrong; the answer is \boxed{4}.", "3", 0.0),
    (r"It is \boxed{1} or \boxed{2}.", "1, 2", 1.0),  # "x = 1 or x = 2": two roots
    (r"It is \boxed{1} or \boxed{2}.", "2", 0.0),  # a hedge, not the last box 2
    (r"$\boxed{1}, \boxed{2}, \boxed{3}$", "1, 2", 0.0),
    (r"\boxed{1} then \boxed{2}, finally \boxed{3}", "1, 2", 0.0),
]


def test_answers_split_over_several_boxes():
    got = math_accuracy_reward([c for c, _, _ in MULTI_BOX_CASES], answer=[g for _, g, _ in MULTI_BOX_CASES])
    wrong = [(c, g, e, r) for (c, g, e), r in zip(MULTI_BOX_CASES, got, strict=True) if r != e]
    assert not wrong, wrong
    assert rewards.extract_final_answer(r"$\boxed{a}$;  $\boxed{b}$ and \boxed{c}") == "a, b, c"
    assert rewards.extract_boxed_answer(r"$\boxed{a}$, $\boxed{b}$") == "b"
    assert rewards.extract_final_answer(r"\(\boxed{1}\) and \(\boxed{-2}\)") == "1, -2"
    assert rewards.extract_final_answer(r"\boxed{a} or \boxed{b}") == "a, b"


# ------------------------------------------------------------------- the Hendrycks-MATH string match
# (prediction inside \boxed{}, gold, string match, math_accuracy): each string-match value is derived
# by hand from the normalisation rules listed in prerl_trl/rewards/hendrycks.py (rule numbers below);
# the math_accuracy column is the mathematical truth. Rows where the two differ are the point.
STRING_CASES: list[tuple[str, str, float, float]] = [
    (r"\dfrac{1}{2}", r"\frac12", 1.0, 1.0),  # 1: dfrac -> frac; 6: \frac12 -> \frac{1}{2}
    (r"\tfrac{3}{4}", r"\frac{3}{4}", 1.0, 1.0),  # 1
    (r"\frac1{72}", r"\frac{1}{72}", 1.0, 1.0),  # 6
    (r"\left( 1, 3 \right]", "(1,3]", 1.0, 1.0),  # 1: \left, \right dropped; 5: spaces dropped
    ("0.5", r"\frac{1}{2}", 1.0, 1.0),  # 7
    (".5", "0.5", 1.0, 1.0),  # 3: leading "." gets a 0, then 7
    ("1/2", r"\frac{1}{2}", 1.0, 1.0),  # 7: a/b of integers
    (r"5\text{ cm}", "5", 1.0, 1.0),  # 2: units after "\text{ " dropped
    (r"5 \text{ cm}", "5", 1.0, 1.0),  # 2, then 5
    (r"30^\circ", "30", 1.0, 1.0),  # 1
    (r"30^{\circ}", "30", 1.0, 1.0),  # 1
    (r"50\%", "50", 1.0, 1.0),  # 3
    (r"\$18.90", "18.90", 1.0, 1.0),  # 1
    ("x = 5", "5", 1.0, 1.0),  # 4
    ("k=7", "7", 1.0, 1.0),  # 4
    (r"\sqrt2", r"\sqrt{2}", 1.0, 1.0),  # 5
    (r"\text{Monday}", r"\text{Monday}", 1.0, 1.0),  # identical
    ("41", "42", 0.0, 0.0),
    # the string match is stricter: equal numbers written differently
    ("0.50", r"\frac12", 0.0, 1.0),  # 7 applies to "0.5" exactly
    (r"\frac{2}{4}", r"\frac12", 0.0, 1.0),  # no arithmetic
    ("-3/4", r"-\frac{3}{4}", 0.0, 1.0),  # 7 gives \frac{-3}{4}
    (r"25\%", "0.25", 0.0, 1.0),  # 3 drops \%, leaving 25
    (r"\$18.90", "18.9", 0.0, 1.0),
    ("1,000", "1000", 0.0, 1.0),  # the comma stays
    (r"1,\!000", "1000", 0.0, 1.0),  # 1 drops \!, the comma stays
    (r"5\text{cm}", "5", 0.0, 1.0),  # 2 needs the space after \text{
    (r"2\sqrt2", r"\sqrt8", 0.0, 1.0),
    (r"\sqrt2+1", r"1+\sqrt{2}", 0.0, 1.0),
    (r"\{2,1\}", r"\{1,2\}", 0.0, 1.0),
    ("(x+1)^2", "x^2+2x+1", 0.0, 1.0),
    # 4 strips the gold's "xy" (2 characters) but not the prediction's "xy " (3, before 5 drops spaces)
    ("xy = 5", "xy=5", 0.0, 1.0),
    (r"\text{(B)}", "B", 0.0, 1.0),
    # ... and sometimes more lenient: everything after "\text{ " is dropped
    (r"5\text{ or }6", "5", 1.0, 0.0),
    # where a rule gives up (a \sqrt at the very end), the raw strings are compared
    (r"2 \sqrt", r"2\sqrt", 0.0, 0.0),
    (r"2\sqrt", r"2\sqrt", 1.0, 1.0),
]


def test_string_match_table():
    completions = [_completion(pred) for pred, *_ in STRING_CASES]
    golds = [gold for _, gold, *_ in STRING_CASES]
    string = rewards.math_string_match_reward(completions, answer=golds)
    wrong = [(p, g, e, r) for (p, g, e, _), r in zip(STRING_CASES, string, strict=True) if r != e]
    assert not wrong, "pred, gold, expected, got:\n" + "\n".join(map(repr, wrong))
    disagreements = [c for c in STRING_CASES if c[2] != c[3]]
    assert len(disagreements) >= 10


def test_math_accuracy_on_the_string_table():
    rows = [c for c in STRING_CASES if "sqrt}" not in c[0] and not c[0].endswith("\\sqrt")]
    got = math_accuracy_reward([_completion(p) for p, *_ in rows], answer=[g for _, g, *_ in rows])
    wrong = [(p, g, e, r) for (p, g, _, e), r in zip(rows, got, strict=True) if r != e]
    assert not wrong, "pred, gold, expected, got:\n" + "\n".join(map(repr, wrong))


def test_string_match_normalisation_steps():
    norm = rewards.hendrycks_normalize
    assert norm(r"\left(\dfrac12, 3\right)") == r"(\frac{1}{2},3)"
    assert norm("k = .5") == r"\frac{1}{2}"
    assert norm(r"10\text{ inches}") == "10"
    assert norm(r"\frac{7}{2}") == r"\frac{7}{2}" and norm("7/2") == r"\frac{7}{2}" and norm("07/2") == "07/2"
    assert norm("a\nb") == "ab" and norm(r"\\frac12") == r"\frac{1}{2}"


def test_string_match_reward_columns_none_and_metrics():
    metrics: dict[str, float] = {}
    extras: dict[str, list] = {}
    got = rewards.math_string_match_reward(
        [_completion("5"), _completion("5"), "no box", r"\boxed{5", _completion("7")],
        answer=["", None, "5", "5", 7.0],
        log_metric=metrics.__setitem__,
        log_extra=extras.__setitem__,
        trainer_state=object(),
    )
    assert got == [None, None, 0.0, 0.0, 1.0]
    assert metrics == {
        "math_string_match/unparseable": 1.0,
        "math_string_match/no_answer": 1.0,
        "math_string_match/gold_unparseable": 2.0,
    }
    assert extras["boxed_answer"] == ["5", "5", "[none]", "[none]", "7"]
    solution = r"so $\boxed{\dfrac{1}{2}}$"
    assert rewards.math_string_match_reward([_completion("0.5")], solution=[solution]) == [1.0]
    # the authors' reward scores the last box only
    assert rewards.math_string_match_reward([r"\boxed{1}, \boxed{2}"], answer=["1,2"]) == [0.0]
    with pytest.raises(ValueError, match="math_string_match_reward: `completions` has 2 items"):
        rewards.math_string_match_reward(["a", "b"], answer=["1"])
    with pytest.raises(ValueError, match="answer="):
        rewards.math_string_match_reward(["a"])


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_string_match_adversarial(name):
    start = time.monotonic()
    assert rewards.math_string_match_reward([ADVERSARIAL[name]], answer=["5"]) == [0.0]
    assert time.monotonic() - start < 10.0  # a hang guard: this is plain string work


def test_reward_names_resolve_in_recipes():
    from prerl_trl.cli import _reward_funcs

    assert _reward_funcs(["math_string_match", "math_accuracy", "format"]) == [
        rewards.math_string_match_reward,
        math_accuracy_reward,
        format_reward,
    ]


def test_package_settings_still_apply(monkeypatch):
    """`prerl_trl.rewards.DEFAULT_TIMEOUT_SECONDS` / `MAX_ANSWER_CHARS`, set on the package, rule the calls."""
    monkeypatch.setattr(rewards, "MAX_ANSWER_CHARS", 3)
    assert math_accuracy_reward([_completion("1234"), _completion("123")], answer=["1234", "123"]) == [0.0, 1.0]
    monkeypatch.undo()
    seen: list[float] = []

    class FakePool:
        def run(self, pairs, timeout):
            seen.append(timeout)
            return [rewards.EQUAL] * len(pairs)

    from prerl_trl.rewards import functions

    monkeypatch.setattr(functions, "get_pool", FakePool)
    monkeypatch.setattr(rewards, "DEFAULT_TIMEOUT_SECONDS", 0.25)
    assert math_accuracy_reward([_completion("x^2")], answer=["x*x"]) == [1.0]
    assert math_accuracy_reward([_completion("x^2")], answer=["x*x"], timeout_seconds=2.0) == [1.0]
    assert seen == [0.25, 2.0]


def test_eval_verifier_selects_the_reward():
    from prerl_trl import evaluation

    completions = [_completion(r"\frac{2}{4}"), _completion(r"\frac12"), "no box"]
    assert evaluation.score_completions(completions, r"\frac12") == [True, True, False]
    assert evaluation.score_completions(completions, r"\frac12", verifier="math_string_match") == [False, True, False]
    assert evaluation.build_parser().parse_args(
        ["--model", "m", "--dataset", "d", "--output-dir", "o", "--verifier", "math_string_match"]
    ).verifier == "math_string_match"
    with pytest.raises(SystemExit):
        evaluation.build_parser().parse_args(["--model", "m", "--dataset", "d", "--output-dir", "o", "--verifier", "x"])
