"""1-operation arithmetic for SmolLM2-135M-Instruct, as chat conversations with worked examples as earlier turns.

A problem is `a op b` with two-digit operands for + and -, and a one-digit factor for *; the answer is boxed:
`What is 47 + 38?` -> `47 + 38 = 85. \\boxed{85}`. The reward is exact match of the last `\\boxed{}` with the
integer (the miniature's reward)."""

from __future__ import annotations

import random
from dataclasses import dataclass

SYSTEM = "Solve the arithmetic problem. Write the calculation, then the result in \\boxed{}."


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def question(self) -> str:
        return f"What is {self.a} {self.op} {self.b}?"

    @property
    def answer(self) -> str:
        return str(self.a + self.b if self.op == "+" else self.a - self.b if self.op == "-" else self.a * self.b)

    @property
    def solution(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.answer}. \\boxed{{{self.answer}}}"


def make_problem(rng: random.Random) -> Problem:
    op = rng.choice("+-*")
    if op == "*":
        return Problem(rng.randint(11, 99), op, rng.randint(2, 9))
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return Problem(max(a, b), op, min(a, b)) if op == "-" else Problem(a, op, b)


def problems(n: int, seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """`n` distinct problems, none of whose question is in `exclude`."""
    rng, out, seen = random.Random(seed), [], set(exclude)
    while len(out) < n:
        p = make_problem(rng)
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


def messages(problem: Problem, shots: list[Problem]) -> list[dict]:
    """The conversation: system prompt, each worked example as a user/assistant turn, then the question."""
    turns = [{"role": "system", "content": SYSTEM}]
    for shot in shots:
        turns += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": shot.solution}]
    return turns + [{"role": "user", "content": problem.question}]


def splits(num_train: int, num_test: int, num_shots: int, seed: int = 0) -> dict[str, list[Problem]]:
    """Disjoint worked examples (shared by every prompt), RL problems and held-out test problems."""
    shots = problems(num_shots, seed)
    test = problems(num_test, seed + 1, {p.question for p in shots})
    train = problems(num_train, seed + 2, {p.question for p in shots + test})
    return {"shots": shots, "train": train, "test": test}
