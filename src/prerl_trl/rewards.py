"""Math verifier rewards (placeholder: implemented in issue 3)."""

from __future__ import annotations


def math_accuracy_reward(completions, answer=None, solution=None, **kwargs):  # pragma: no cover - placeholder
    raise NotImplementedError("math_accuracy_reward is being implemented (issue 3)")
