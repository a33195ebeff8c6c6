"""PreRLTrainer and DSRLTrainer: thin hooks on TRL's GRPOTrainer (`prerl.py`, `dsrl.py`), their model card
(`card.py`) and small helpers (`hooks.py`)."""

from .card import PRERL_CITATION
from .dsrl import DSRL_STATE_FILE, DSRLTrainer
from .hooks import quiet_checkpointing_deprecations
from .prerl import ROW_EXACT_LOSS_TYPES, PreRLTrainer

__all__ = [
    "DSRL_STATE_FILE",
    "PRERL_CITATION",
    "ROW_EXACT_LOSS_TYPES",
    "DSRLTrainer",
    "PreRLTrainer",
    "quiet_checkpointing_deprecations",
]
