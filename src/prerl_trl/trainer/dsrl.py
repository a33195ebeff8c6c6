"""DSRLTrainer: NSR-PreRL until its switch criterion holds (by default `dsrl_switch_step` optimizer steps), then
standard GRPO; the switch (performed here), resume and reset. The decision is `switch.py`'s."""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any

from transformers import TrainerCallback
from trl.trainer.callbacks import SyncRefModelCallback

from ..config import DSRLConfig, PreRLConfig
from .prerl import PreRLTrainer
from .switch import DSRLPhase, StepCriterion, SwitchCriterion

logger = logging.getLogger(__name__)
DSRL_STATE_FILE = "dsrl_state.json"


class _WarnWithoutSwitch(TrainerCallback):
    """At the start of training, warn when the run is too short for DSRL to reach its switch."""

    def __init__(self, trainer: DSRLTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        phase = self.trainer._dsrl_phase
        if not isinstance(phase.criterion, StepCriterion):
            return
        switch = phase.criterion.switch_step
        if state.max_steps <= switch and not phase.switched_before_resume:
            message = (
                f"DSRL: this run has {state.max_steps} optimizer steps, and dsrl_switch_step={switch}: it never "
                "switches to GRPO and trains NSR-PreRL only. Raise max_steps / num_train_epochs or lower "
                "dsrl_switch_step."
            )
            warnings.warn(message, stacklevel=2)  # once: a logger.warning beside it printed the same line twice


class DSRLTrainer(PreRLTrainer):
    """Dual Space RL: NSR-PreRL for `dsrl_switch_step` optimizer steps, then standard GRPO on log P(y|x).

    The phase is decided once per generation batch, from the optimizer step at which the batch is generated, and
    carried in the batch: with `steps_per_generation > 1` or `num_iterations > 1` the switch happens at the first
    generation batch that starts at or after `dsrl_switch_step`. At the switch the reference model is re-synced to the
    policy (`dsrl_sync_ref_at_switch`) and the optimizer state can be reset (`dsrl_reset_optimizer`).

    `switch_criterion` (keyword argument) replaces the step rule by another criterion (see `trainer/switch.py`), e.g.
    `MetricThreshold("reward", 0.6)`; it must decide the same on every process.
    """

    _tag_names = ["trl", "grpo", "prerl", "dsrl"]
    _name = "DSRL"
    _config_class = DSRLConfig

    def __init__(self, model, reward_funcs=None, args: DSRLConfig | None = None,
                 switch_criterion: SwitchCriterion | None = None, **kwargs: Any) -> None:
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self._dsrl_phase = DSRLPhase(switch_criterion or StepCriterion(self.args.dsrl_switch_step))
        self.add_callback(_WarnWithoutSwitch(self))

    def _check_options(self, args: PreRLConfig) -> None:
        """Every GRPOConfig option is accepted (the GRPO phase honours it, the NSR-PreRL phase uses the paper's loss),
        but one combination: joint mode scales TRL's `entropy_coef` by 1 / rl_loss_coef for the length of TRL's loss,
        and TRL's adaptive controller updates `entropy_coef` inside that loss, where the update (clamped to
        entropy_coef_min / max in the scaled space) cannot be mapped back exactly."""
        if args.use_adaptive_entropy and args.rl_loss_coef not in (0.0, 1.0):
            raise ValueError(
                f"use_adaptive_entropy=True with rl_loss_coef={args.rl_loss_coef} is not supported by "
                f"{type(self).__name__}: joint mode runs TRL's conditional loss with entropy_coef / rl_loss_coef, so "
                "that the bonus is counted once and unscaled, and the adaptive controller's update inside that loss "
                "would be lost. Use rl_loss_coef 0 or 1, or a fixed entropy_coef."
            )

    def _pretrain_phase(self, mode: str) -> bool:
        """Decided once per generation batch, before generation; in training, a decision to leave pre-train space is
        performed at once (`_switch_to_grpo`). Evaluation reads the phase without switching."""
        pretrain = self._dsrl_phase.decide(self)
        if mode == "train" and not pretrain and not self._dsrl_phase.switched:
            self._switch_to_grpo()
        return pretrain

    def _switch_to_grpo(self) -> None:
        """Perform the switch (or, resumed after it, re-enter GRPO): announce it, re-sync the reference, reset the
        optimizer state (a fresh switch only)."""
        step = self.state.global_step
        fresh_switch = self._dsrl_phase.mark_switched(step)
        if fresh_switch:
            self._announce(f"DSRL: switching from NSR-PreRL (log P(y)) to GRPO (log P(y|x)) at optimizer step {step}")
        else:
            switched_at = self._dsrl_phase.switched_at
            at = "" if switched_at is None else f" at optimizer step {switched_at}"
            self._announce(
                f"DSRL: resumed at optimizer step {step}, in the GRPO phase: the run switched from NSR-PreRL to GRPO{at}, "
                "before the checkpoint."
            )
        if self.args.dsrl_sync_ref_at_switch and self.ref_model is None and self.beta != 0.0:
            logger.warning(
                "dsrl_sync_ref_at_switch: with PEFT the reference is the adapter-disabled base model, which cannot be "
                "re-synced to the policy; the KL term stays against the base model."
            )
        if self.args.dsrl_sync_ref_at_switch and self.ref_model is not None:
            if not fresh_switch and self.beta != 0.0:
                logger.warning(
                    "Resumed after the DSRL switch: checkpoints do not hold the reference model, so it is re-synced "
                    "to the resumed policy."
                )
            SyncRefModelCallback.sync_target_model(self.accelerator.unwrap_model(self.model), self.ref_model, 1.0)
        if self.args.dsrl_reset_optimizer and fresh_switch:
            self._reset_optimizer_state()

    def _steps_with_earlier(self, steps: dict[str, int], total: int, earlier: int) -> dict[str, int]:
        """The model card's steps per phase over the whole run, from the step this run switched at."""
        phase = self._dsrl_phase
        if phase.switched_at is None and phase.switched:  # a checkpoint of a version that did not record the step
            return {**steps, "earlier, phase not recorded": earlier}
        pretrain = min(total, phase.switched_at if phase.switched_at is not None else total)
        return {"pre-train space": pretrain, "GRPO": total - pretrain}

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            with open(os.path.join(folder, DSRL_STATE_FILE), "w") as f:
                json.dump(self._dsrl_phase.state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, DSRL_STATE_FILE) if checkpoint is not None else None
        if path is not None and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self._dsrl_phase.load_state_dict(saved)
            criterion = self._dsrl_phase.criterion
            if (self._dsrl_phase.switched_before_resume and isinstance(criterion, StepCriterion)
                    and saved.get("dsrl_switch_step") != criterion.switch_step):
                logger.warning(
                    "This checkpoint was saved after the DSRL switch (dsrl_switch_step=%s); the run stays in GRPO "
                    "although dsrl_switch_step=%s now: a phase never goes back.",
                    saved.get("dsrl_switch_step"), criterion.switch_step,
                )

    def _announce(self, message: str) -> None:
        """Print on the main process (visible under a progress bar and in notebooks) and log it."""
        logger.info(message)
        self.accelerator.print(message)

    def _reset_optimizer_state(self) -> None:
        if self.is_deepspeed_enabled:
            logger.warning("dsrl_reset_optimizer is not supported with DeepSpeed; the optimizer state is kept.")
            return
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        optimizer.state.clear()
        logger.warning("DSRL: optimizer state reset at the switch.")
