"""PreRLTrainer and DSRLTrainer: thin hooks on TRL's GRPOTrainer (`prerl.py`, `dsrl.py`), the DSRL phase and its switch
criteria (`switch.py`), the optimizer step's state and learning rate (`optimizer_step.py`), their model card
(`card.py`), every reach into TRL's internals (`trl_internals.py`) and small
helpers (`utils.py`). Only the public names are exported here."""

from .dsrl import DSRL_STATE_FILE, DSRLTrainer
from .prerl import PreRLTrainer
from .switch import MetricThreshold, StepCriterion, SwitchCriterion
from .utils import quiet_checkpointing_deprecations

__all__ = [
    "DSRL_STATE_FILE",
    "DSRLTrainer",
    "MetricThreshold",
    "PreRLTrainer",
    "StepCriterion",
    "SwitchCriterion",
    "quiet_checkpointing_deprecations",
]
