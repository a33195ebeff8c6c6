"""Pure functions for pre-train-space advantages and sample filters.

- `group_advantages`: A = r - mean(r over the prompt's group), optionally divided by a std ("group" or "batch").
- `sample_filter_mask`: which rollouts enter the loss ("negative": A < 0, NSR; "positive": A > 0, PSR; "all").
- `nsr_advantages` / `w_reinforce_advantages`: the group-free estimators of Zhu et al. (2025) for rewards in {0, 1}.
- `estimate_advantages`: one of the three estimators by name, as a config selects it.
"""

from __future__ import annotations

import torch
from trl.trainer.utils import nanstd


def combine_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of per-function rewards `(N, F)` -> `(N,)`.

    None rewards arrive as NaN. A function that returned None is skipped in the sum; a rollout for which every function
    returned None is unscorable and stays NaN, so it does not move its group's baseline.
    """
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards


def group_advantages(rewards: torch.Tensor, num_generations: int, scale: str = "none") -> torch.Tensor:
    """Pre-train-space advantages from rewards `(N,)` ordered in groups of `num_generations`.

    A_i = r_i - mean(r over the group). With `scale="group"` A is divided by the group's std, with `scale="batch"` by
    the std of the whole batch (both + 1e-4, as TRL does). NaN rewards (unscorable) are left out of the means and get
    A = 0.
    """
    if rewards.numel() % num_generations != 0:
        raise ValueError(
            f"{rewards.numel()} rewards cannot be split into groups of num_generations={num_generations}."
        )
    grouped = rewards.view(-1, num_generations)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    advantages = grouped - mean
    if scale == "group":
        advantages = advantages / (nanstd(grouped, dim=1, keepdim=True) + 1e-4)
    elif scale == "batch":
        advantages = advantages / (nanstd(rewards) + 1e-4)
    elif scale != "none":
        raise ValueError(f"prerl_scale_rewards={scale!r} is not supported. Use 'none', 'group' or 'batch'.")
    return torch.nan_to_num(advantages.view(-1), nan=0.0)


def sample_filter_mask(advantages: torch.Tensor, sample_filter: str) -> torch.Tensor:
    """Boolean mask of the rollouts that enter the loss.

    "negative" keeps A < 0 (NSR), "positive" keeps A > 0 (PSR), "all" keeps every rollout.
    """
    if sample_filter == "negative":
        return advantages < 0
    if sample_filter == "positive":
        return advantages > 0
    if sample_filter == "all":
        return torch.ones_like(advantages, dtype=torch.bool)
    raise ValueError(f"sample filter {sample_filter!r} is not supported. Use 'negative', 'positive' or 'all'.")


def nsr_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """NSR estimator (Zhu et al. 2025) for rewards in {0, 1}: -1 for every wrong answer, 0 for right ones."""
    return torch.where(rewards > 0.5, torch.zeros_like(rewards), -torch.ones_like(rewards))


def w_reinforce_advantages(rewards: torch.Tensor, positive_weight: float = 0.1) -> torch.Tensor:
    """W-REINFORCE estimator (Zhu et al. 2025) for rewards in {0, 1}: +lambda for right answers, -1 for wrong ones."""
    return torch.where(rewards > 0.5, torch.full_like(rewards, positive_weight), -torch.ones_like(rewards))


ADVANTAGE_ESTIMATORS = ("group_mean", "nsr", "w_reinforce")


def estimate_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    estimator: str = "group_mean",
    scale: str = "none",
    positive_weight: float = 0.1,
) -> torch.Tensor:
    """Advantages `(N,)` from rewards `(N,)` by the named estimator: "group_mean" (`group_advantages` with `scale`),
    "nsr" or "w_reinforce" (with `positive_weight`). Unscorable (NaN) rewards get A = 0 under every estimator."""
    if estimator == "group_mean":
        return group_advantages(rewards, num_generations, scale)
    if estimator == "nsr":
        advantages = nsr_advantages(rewards)
    elif estimator == "w_reinforce":
        advantages = w_reinforce_advantages(rewards, positive_weight)
    else:
        raise ValueError(f"advantage estimator {estimator!r} is not supported. Use one of {', '.join(ADVANTAGE_ESTIMATORS)}.")
    return torch.where(torch.isnan(rewards), torch.zeros_like(advantages), advantages)
