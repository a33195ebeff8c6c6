"""Small helpers of the trainers, used at construction: the reward-output check and a warning filter."""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import Any

import torch
from torch import nn
from trl.trainer.utils import is_async_callable


def quiet_checkpointing_deprecations() -> None:
    """Show transformers' `gradient_checkpointing` FutureWarning once per run, not 4 to 10 times.

    Transformers 5 deprecates the `gradient_checkpointing*` names (for `activation_checkpointing*`), and TRL calls
    them around every scoring pass; each call site, and each reset of Python's warning registry, printed the same
    advice again. The config warns when it is built, before any trainer exists: later ones are ignored."""
    warnings.filterwarnings(
        "ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning
    )


def checked_reward(func: Any, name: str) -> Any:
    """Wrap a plain (synchronous, non-model) reward function so that an output that is not one number (or None) per
    completion fails with the function's name, instead of deep inside TRL. It adds no call of its own."""
    if isinstance(func, nn.Module) or not callable(func) or is_async_callable(func):
        return func

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        rewards = func(*args, **kwargs)
        if rewards is None or isinstance(rewards, (str, bytes)) or not hasattr(rewards, "__len__"):
            raise ValueError(
                f"reward_funcs: {name!r} returned {type(rewards).__name__}; a reward function must return a list with "
                "one float (or None) per completion."
            )
        for value in rewards:
            if value is None or isinstance(value, numbers.Real) or (torch.is_tensor(value) and value.numel() == 1):
                continue
            raise ValueError(
                f"reward_funcs: {name!r} returned a {type(value).__name__} ({value!r:.40}) among its rewards; a reward "
                "function must return one float (or None) per completion."
            )
        return rewards

    return checked
