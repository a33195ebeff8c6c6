"""prerl-trl: reinforcement learning in pre-train space (PreRL, NSR-PreRL, DSRL) for TRL."""

from .config import DSRLConfig, PreRLConfig
from .rewards import math_accuracy_reward
from .trainer import DSRLTrainer, PreRLTrainer

__version__ = "0.1.0"

__all__ = [
    "DSRLConfig",
    "DSRLTrainer",
    "PreRLConfig",
    "PreRLTrainer",
    "__version__",
    "math_accuracy_reward",
]
