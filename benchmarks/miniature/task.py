"""The miniature task: multi-step arithmetic evaluated left to right, answer in `\\boxed{}`.

A problem is a start number and a chain of operations, e.g. `Q: 7+5*3-4` (left to right, so 32). A worked
solution writes one line per step and ends with the boxed answer:

    7+5=12. 12*3=36. 36-4=32. \\boxed{32}

The pretraining corpus mixes solution styles (`SOLUTION_STYLES`): correct ones, wrong ones (one arithmetic slip that
propagates), reflective ones that catch the slip ("Wait, let me check: ..."), ones that switch approach after a slip
("Alternatively, ..."), and correct ones that double-check a step. The wrong share is what leaves the base model
partly right, with room for RL to improve.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

BOS = "<|endoftext|>"  # document start: also the pre-train-space context token (the tokenizer's BOS)
EOS = "<|im_end|>"  # end of a solution
PAD = "<|pad|>"
OPS = ("+", "-", "*")
MAX_VALUE = 99
SLIPS = (-2, -1, 1, 2, 10, -10)

# Share of each solution style in the pretraining corpus (sums to 1).
SOLUTION_STYLES = {
    "correct": 0.45,
    "wrong": 0.35,
    "reflect_fix": 0.08,  # slip, "Wait, let me check: ...", then the right value
    "switch_fix": 0.05,  # slip carried to the end, "Alternatively, ..." redo from the start, right answer
    "double_check": 0.07,  # correct, with a "Let me check: ... Yes." on one step
}


@dataclass(frozen=True)
class Problem:
    start: int
    steps: tuple[tuple[str, int], ...]  # (operator, operand)

    @property
    def question(self) -> str:
        return f"Q: {self.start}" + "".join(f"{op}{n}" for op, n in self.steps)

    @property
    def prompt(self) -> str:
        """What the policy is conditioned on: document start, question, and the answer cue."""
        return f"{BOS}{self.question}\nA:"

    @property
    def values(self) -> list[int]:
        out, v = [], self.start
        for op, n in self.steps:
            v = apply(op, v, n)
            out.append(v)
        return out

    @property
    def answer(self) -> str:
        return str(self.values[-1])


def apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def make_problem(rng: random.Random, num_steps: int) -> Problem:
    """A random chain whose intermediate values all stay in [0, MAX_VALUE]; multiplications use factors 2 to 4."""
    start = rng.randint(1, 9)
    value, steps = start, []
    while len(steps) < num_steps:
        op = rng.choice(OPS)
        n = rng.randint(2, 4) if op == "*" else rng.randint(1, 9)
        if 0 <= apply(op, value, n) <= MAX_VALUE:
            steps.append((op, n))
            value = apply(op, value, n)
    return Problem(start, tuple(steps))


def _lines(problem: Problem, slip_at: int | None, slip: int) -> tuple[list[str], list[int]]:
    """Step lines with an optional slip at step `slip_at` (its result off by `slip`, carried forward)."""
    lines, values, v = [], [], problem.start
    for i, (op, n) in enumerate(problem.steps):
        r = apply(op, v, n) + (slip if i == slip_at else 0)
        lines.append(f"{v}{op}{n}={r}.")
        values.append(r)
        v = r
    return lines, values


def solution(problem: Problem, style: str, rng: random.Random) -> str:
    """A worked solution in one of `SOLUTION_STYLES`, ending with the boxed answer and no EOS."""
    k = len(problem.steps)
    slip_at, slip = rng.randrange(k), rng.choice(SLIPS)
    right, _ = _lines(problem, None, 0)
    if style == "correct":
        body = right
    elif style == "wrong":
        body, values = _lines(problem, slip_at, slip)
        return " ".join(body) + f" \\boxed{{{values[-1]}}}"
    elif style == "reflect_fix":
        wrong, _ = _lines(problem, slip_at, slip)
        body = right[:slip_at] + [wrong[slip_at], f"Wait, let me check: {right[slip_at]}"] + right[slip_at + 1 :]
    elif style == "switch_fix":
        wrong, _ = _lines(problem, slip_at, slip)
        body = wrong + ["Alternatively, again:"] + right
    elif style == "double_check":
        i = rng.randrange(k)
        body = right[: i + 1] + [f"Let me check: {right[i]} Yes."] + right[i + 1 :]
    else:
        raise ValueError(f"style={style!r} is not a solution style; use one of {', '.join(SOLUTION_STYLES)}")
    return " ".join(body) + f" \\boxed{{{problem.answer}}}"


def corpus(problems: list[Problem], seed: int, standalone_share: float = 0.0) -> list[str]:
    """One pretraining document per problem: `BOS question \\nA: solution EOS`, styles drawn by `SOLUTION_STYLES`.

    With `standalone_share` > 0, that share of the documents (drawn at random) is the worked solution alone,
    `BOS solution EOS`, with no problem statement: the text after BOS is then exactly what a rollout is (a space, the
    solution), so log P(y | BOS) scores text the base has seen right after the document start, as worked solutions
    appear on their own in an LLM's pretraining data. A share of 0 draws nothing more from the RNG: the same corpus as
    before the setting existed."""
    if not 0.0 <= standalone_share < 1.0:
        raise ValueError(f"standalone_share={standalone_share!r} must be in [0, 1); 0 gives the original corpus")
    rng = random.Random(seed)
    styles, weights = list(SOLUTION_STYLES), list(SOLUTION_STYLES.values())
    docs = []
    for p in problems:
        answer = solution(p, rng.choices(styles, weights)[0], rng)
        standalone = standalone_share > 0 and rng.random() < standalone_share
        docs.append(f"{BOS} {answer}{EOS}" if standalone else f"{p.prompt} {answer}{EOS}")
    return docs


def splits(num_steps: int, num_pretrain: int, num_rl: int, num_val: int, num_test: int, seed: int = 0) -> dict:
    """Disjoint problem sets (by question text): pretraining corpus, RL prompts, validation (sweep), test."""
    rng = random.Random(seed)
    sizes = {"val": num_val, "test": num_test, "rl": num_rl, "pretrain": num_pretrain}
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {}
    for name, size in sizes.items():
        out[name] = []
        tries = 0
        while len(out[name]) < size:
            p = make_problem(rng, num_steps)
            tries += 1
            # Held-out sets are unique; the corpus may repeat its own problems once the space runs short.
            if p.question in seen and (name != "pretrain" or tries < 50 * size):
                continue
            seen.add(p.question)
            out[name].append(p)
    return out


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_answer(text: str) -> str | None:
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


def exact_match_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """1.0 when the last `\\boxed{...}` of the completion is exactly the gold integer, else 0.0."""
    return [
        1.0 if boxed_answer(c if isinstance(c, str) else c[-1]["content"]) == str(a) else 0.0
        for c, a in zip(completions, answer, strict=True)
    ]
