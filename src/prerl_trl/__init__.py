"""prerl-trl: reinforcement learning in pre-train space (PreRL, NSR-PreRL, DSRL) for TRL.

The public names are imported on first use, so that `import prerl_trl` (and `prerl-trl --help`, `--version`,
`configs`) does not import torch, transformers and TRL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.1"

_LAZY = {
    "DSRLConfig": ".config",
    "PreRLConfig": ".config",
    "DSRLTrainer": ".trainer",
    "PreRLTrainer": ".trainer",
    "math_accuracy_reward": ".rewards",
}

__all__ = [
    "DSRLConfig",
    "DSRLTrainer",
    "PreRLConfig",
    "PreRLTrainer",
    "__version__",
    "math_accuracy_reward",
]

if TYPE_CHECKING:
    from .config import DSRLConfig, PreRLConfig
    from .rewards import math_accuracy_reward
    from .trainer import DSRLTrainer, PreRLTrainer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
