"""What happens between a PreRL / DSRL loss and its optimizer step: the phase of the gradient-accumulation window, the
learning rate of steps in pre-train space (`prerl_learning_rate_scale`), the skipped update of a window without any
reward, and the per-phase step count of the model card.

`_compute_loss` ends each training micro-batch with `_end_micro_batch`; the callbacks below act right before the
optimizer step that closes the window. These are the only values that travel from the loss to the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback


@dataclass
class _StepWindow:
    """Written by `_compute_loss` on each micro-batch, read by the callbacks before the optimizer step that ends the
    gradient-accumulation window (the only values that travel from the loss to the optimizer step)."""

    pretrain: bool = True  # the phase of the window's last micro-batch
    without_reward: bool = True  # no micro-batch of the window had a reward (pre-train phase)


class _CountStepsForCard(TrainerCallback):
    """Counts the optimizer steps of each phase, for the model card."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._steps_run["pre-train space" if self.trainer._step_window.pretrain else "GRPO"] += 1


class _SkipUpdateWithoutReward(TrainerCallback):
    """Calls `PreRLTrainer._skip_update_without_reward` right before each optimizer step."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._skip_update_without_reward()


class OptimizerStepMixin:
    """For `PreRLTrainer` (a transformers `Trainer`): the state and hooks of the optimizer step."""

    def _init_optimizer_step(self) -> None:
        self._applied_learning_rate: float | None = None
        self._step_window = _StepWindow()
        self._steps_run = {"pre-train space": 0, "GRPO": 0}  # optimizer steps of this run, for the model card
        self.add_callback(_CountStepsForCard(self))
        self.add_callback(_SkipUpdateWithoutReward(self))

    def _end_micro_batch(self, pretrain: bool, no_reward: bool | None) -> None:
        """A training micro-batch's loss is computed: record its phase and reward flag (`no_reward` None: a batch
        that does not carry one), and set the learning rate its optimizer step will apply."""
        self._step_window.pretrain = pretrain
        self._apply_phase_learning_rate(pretrain)
        if no_reward is not None:
            self._step_window.without_reward &= no_reward

    def _apply_phase_learning_rate(self, pretrain: bool) -> None:
        """Before this micro-batch's optimizer step: `prerl_learning_rate_scale` x the scheduler's rate in pre-train
        space, the scheduler's own rate otherwise. Set on every micro-batch (the scheduler resets the rates after each
        step, and DeepSpeed steps inside the backward pass), so it holds across resume and the DSRL switch."""
        scale = self.args.prerl_learning_rate_scale
        if scale == 1.0 or self.optimizer is None or self.lr_scheduler is None:
            return
        factor = scale if pretrain else 1.0
        for group, rate in zip(self.optimizer.param_groups, self.lr_scheduler.get_last_lr(), strict=True):
            group["lr"] = rate * factor
        self._applied_learning_rate = self.optimizer.param_groups[0]["lr"]

    def _get_learning_rate(self) -> float:
        """The logged `learning_rate`: with `prerl_learning_rate_scale` != 1, the rate the last step applied."""
        if self._applied_learning_rate is not None:
            return self._applied_learning_rate
        return super()._get_learning_rate()

    def _skip_update_without_reward(self) -> None:
        """Before the optimizer step: when no batch of this step had a reward, drop the gradients so that AdamW skips
        every parameter (no momentum step, no weight decay)."""
        # DeepSpeed owns its gradients, and fp16's GradScaler needs every gradient: there the step runs with zeros.
        if self._step_window.without_reward and not (self.is_deepspeed_enabled or self.args.fp16):
            for param in self.model.parameters():
                param.grad = None
        self._step_window.without_reward = True

