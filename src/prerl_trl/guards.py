"""Stop a run at the first optimizer step whose loss or gradient norm is not finite, before that step's update.

Transformers keeps training through a NaN loss (it logs the previous mean instead) and lets AdamW write NaN weights,
which a later checkpoint, the final `save_model` and the Hub then carry. `NonFiniteGuard` is a mixin for any
`transformers.Trainer` subclass (our trainers, and the GRPO trainer of `prerl-trl train`): it raises
`NonFiniteTrainingError` right after the gradient norm is computed and before `optimizer.step()`, so the weights, the
optimizer state and every checkpoint already written stay those of the last good step.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class NonFiniteTrainingError(RuntimeError):
    """The loss or the gradient norm of an optimizer step is NaN or infinite."""


class NonFiniteGuard:
    """Mixin: raise `NonFiniteTrainingError` at the first optimizer step with a non-finite loss or gradient norm.

    The gradient norm is global (all-reduced by the clipping call), so every process raises at the same step; a
    process-local loss check is folded into it, as a NaN loss gives NaN gradients everywhere after the all-reduce."""

    _nonfinite_loss: bool = False

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        if not bool(torch.isfinite(loss.detach()).all()):
            self._nonfinite_loss = True
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        value = float(grad_norm) if grad_norm is not None else 0.0
        bad_loss, self._nonfinite_loss = self._nonfinite_loss, False
        if bad_loss or not math.isfinite(value):
            step = self.state.global_step + 1
            what = "loss" if bad_loss else "gradient norm"
            raise NonFiniteTrainingError(
                f"optimizer step {step}: the {what} is {'not finite' if bad_loss else value}; training stopped before "
                f"this step's update, and nothing was saved for it (the last checkpoint in {self.args.output_dir}, if "
                f"any, is the last good state). Lower learning_rate (now {self.args.learning_rate:g}), or check the "
                "data and the rewards of this step."
            )
        return grad_norm
