"""The DSRL phase: NSR-PreRL (pre-train space) until a switch criterion says so, then GRPO for the rest of the run.

The phase is decided **once per generation batch**, in training, before the batch is generated
(`DSRLTrainer._pretrain_phase`), and the batch carries it (`prerl_active`): with `steps_per_generation > 1` or
`num_iterations > 1` a switch takes effect at the first generation batch after the criterion holds. `DSRLPhase.decide`
only decides; `DSRLTrainer._switch_to_grpo` performs the switch (reference sync, optimizer reset); the checkpoint's
`dsrl_state.json` holds `DSRLPhase.state_dict()`, so a resumed run decides the same way, and a phase never goes back.

A criterion must return the same answer on every process (each one then runs the same phase, and the same
collectives): one that reads per-process values gathers them first, as `MetricThreshold` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class SwitchCriterion(Protocol):
    """When DSRL leaves NSR-PreRL for GRPO. `should_switch` is called once per training generation batch until it
    returns True, on every process at once (it may run collectives)."""

    def should_switch(self, trainer: Any) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class StepCriterion:
    """The default (`dsrl_switch_step`): switch at the first generation batch made at or after this optimizer step.
    Reads the step counter only, the same on every process."""

    switch_step: int

    def should_switch(self, trainer: Any) -> bool:
        return trainer.state.global_step >= self.switch_step

    def describe(self) -> str:
        return f"dsrl_switch_step={self.switch_step}"


@dataclass(frozen=True)
class MetricThreshold:
    """Switch once a logged metric crosses a threshold: the latest value of `key` in `trainer.state.log_history`,
    averaged over processes (gathered first: processes can log different values), at or above `threshold`
    (`above=True`) or at or below it. Before the metric is first logged, no switch. The log history is in every
    checkpoint, so a resumed run reads what the first one read."""

    key: str
    threshold: float
    above: bool = True

    def should_switch(self, trainer: Any) -> bool:
        local = next((h[self.key] for h in reversed(trainer.state.log_history) if self.key in h), math.nan)
        accelerator = trainer.accelerator
        values = accelerator.gather(torch.tensor([float(local)], device=accelerator.device))
        value = values.nanmean().item()
        if math.isnan(value):
            return False
        return value >= self.threshold if self.above else value <= self.threshold

    def describe(self) -> str:
        return f"{self.key} {'>=' if self.above else '<='} {self.threshold}"


class DSRLPhase:
    """The phase of a DSRL run and what a resumed run needs to keep it: whether and at which optimizer step the run
    switched. `decide` is side-effect free (beyond the criterion's collectives); `mark_switched` records a switch."""

    def __init__(self, criterion: SwitchCriterion) -> None:
        self.criterion = criterion
        self.switched = False  # this run (or the checkpoint it resumed from) has switched, and the switch was performed
        self.switched_before_resume = False  # the checkpoint was saved after the switch
        self.switched_at: int | None = None  # the optimizer step of the switch

    def decide(self, trainer: Any) -> bool:
        """Whether this generation batch is in pre-train space."""
        if self.switched or self.switched_before_resume:
            return False  # a phase never goes back, whatever the criterion says now
        return not self.criterion.should_switch(trainer)

    def mark_switched(self, step: int) -> bool:
        """Record the switch performed now; returns whether it is a fresh one (not the resumed run's re-entry)."""
        self.switched = True
        fresh = not self.switched_before_resume
        if fresh:
            self.switched_at = step
        return fresh

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"switched": self.switched or self.switched_before_resume,
                                 "switched_at": self.switched_at, "criterion": self.criterion.describe()}
        if isinstance(self.criterion, StepCriterion):
            state["dsrl_switch_step"] = self.criterion.switch_step
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.switched_before_resume = bool(state["switched"])
        self.switched_at = state.get("switched_at")  # absent in checkpoints of versions before 0.2
