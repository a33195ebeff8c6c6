"""Shared fixtures: a tiny offline model and toy datasets. Nothing here touches the network."""

from __future__ import annotations

import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402

from prerl_trl.tiny import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A warmed-up tiny Qwen2 model and tokenizer saved to disk (rollouts mix right and wrong answers)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_model"), warmup_steps=150))


def boxed_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's last `\\boxed{...}` holds exactly the answer string. Independent of prerl_trl."""
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        found = re.findall(r"\\boxed\{([^{}]*)\}", text)
        rewards.append(1.0 if found and found[-1].strip() == str(gold) else 0.0)
    return rewards
