"""The GRPO trainer of `prerl-trl train --trainer grpo`: TRL's GRPOTrainer with the package's non-finite guard."""

from __future__ import annotations

from trl import GRPOTrainer

from ..guards import NonFiniteGuard


class GuardedGRPOTrainer(NonFiniteGuard, GRPOTrainer):
    """TRL's `GRPOTrainer` that stops at the first optimizer step whose loss or gradient norm is not finite, before
    its update (`prerl_trl.guards.NonFiniteGuard`), as `PreRLTrainer` and `DSRLTrainer` do. Otherwise unchanged: the
    baseline of the paper's comparisons."""
