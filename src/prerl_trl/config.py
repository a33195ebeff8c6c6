"""Configuration dataclasses for PreRL, NSR-PreRL and DSRL.

Both extend TRL's `GRPOConfig`, so every GRPO option (generation, vLLM, logging, checkpointing) keeps working.
Every field carries `metadata={"help": ...}` so that `TrlParser` (and `prerl-trl train`) documents it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

from .advantages import ADVANTAGE_ESTIMATORS
from .pretrain_space import PRETRAIN_CONTEXTS

SAMPLE_FILTERS = ("negative", "positive", "all")
PRERL_SCALE_REWARDS = ("none", "group", "batch")
KL_SPACES = ("conditional", "pretrain")


def _check_choice(field_name: str, value: object, choices: tuple[str, ...], fix: str = "") -> None:
    if value not in choices:
        raise ValueError(
            f"{field_name}={value!r} is not supported. Use one of {', '.join(repr(c) for c in choices)}.{fix}"
        )


def check_learning_rate(value: object) -> None:
    """A finite, non-negative learning rate (AdamW takes `inf` and writes non-finite weights with it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"learning_rate={value!r} must be a finite number >= 0 (the paper uses 1e-6)."
        )


@dataclass
class PreRLConfig(GRPOConfig):
    r"""
    Configuration for [`PreRLTrainer`]: GRPO whose loss scores each rollout in *pre-train space*, as log P(y) after a
    single context token, with the prompt removed.

    Parameters (on top of [`~trl.GRPOConfig`]):
        prerl_sample_filter (`str`, defaults to `"negative"`):
            Which rollouts enter the pre-train-space loss: `"negative"` (advantage < 0, NSR-PreRL), `"positive"`
            (advantage > 0, PSR-PreRL) or `"all"`. Excluded rollouts leave the loss numerator and its token denominator.
        prerl_context (`str`, defaults to `"token"`):
            What the response is scored after in pre-train space: `"token"` (one token, `prerl_context_token`; the
            paper's), `"chat_frame"` (the prompt's system turn(s), an empty user turn and the generation prompt,
            rendered by the chat template) or `"chat_frame_history"` (every turn before the question, then an empty user
            turn and the generation prompt). The frames need conversational prompts and never hold the question.
        prerl_context_token (`str` or `None`, defaults to `None`):
            The single token the response is scored after when `prerl_context="token"`. `None` picks the BOS token, else
            `<|im_start|>` when the vocabulary has it, else the EOS token.
        prerl_loss_coef (`float`, defaults to `0.01`):
            Coefficient of the pre-train-space loss (0.01 in the paper's reference code).
        prerl_learning_rate_scale (`float`, defaults to `1.0`):
            Multiplies the learning rate of the optimizer steps taken in pre-train space (DSRL: the NSR-PreRL warm-up),
            on top of the scheduler's; the GRPO steps keep the scheduler's rate. Under Adam the loss scale
            (`prerl_loss_coef`) mostly cancels, so this is what sets how far those steps move the weights.
        prerl_scale_rewards (`str`, defaults to `"none"`):
            Std normalisation of the pre-train-space advantages A = r - group mean: `"none"` (the paper's), `"group"` or
            `"batch"`.
        rl_loss_coef (`float`, defaults to `0.0`):
            Coefficient of the conditional GRPO loss (on log P(y|x)) during the pre-train phase. `0` (default):
            pre-train space only. Above 0: joint mode, `rl_loss_coef` x conditional loss + `prerl_loss_coef` x
            pre-train-space loss, two forward passes per batch.
        rl_sample_filter (`str`, defaults to `"all"`):
            Which rollouts enter the conditional loss: `"all"` (standard GRPO), `"negative"` (NSR-RL) or `"positive"`
            (PSR-RL).
        prerl_advantage_estimator (`str`, defaults to `"group_mean"`):
            Advantages of the pre-train-space loss: `"group_mean"` (r - group mean, the paper's), `"nsr"` (-1 for wrong
            answers, 0 for right ones) or `"w_reinforce"` (+`w_reinforce_positive_weight` for right answers, -1 for
            wrong ones).
        rl_advantage_estimator (`str`, defaults to `"group_mean"`):
            Advantages of the conditional loss: `"group_mean"` (TRL's GRPO advantages), `"nsr"` or `"w_reinforce"`.
        w_reinforce_positive_weight (`float`, defaults to `0.1`):
            W-REINFORCE's advantage of a right answer (0.1 in Zhu et al. 2025).
        prerl_kl_space (`str`, defaults to `"conditional"`):
            With `beta > 0`: `"conditional"` (the authors' code: the KL term is on log P(y|x) only, so there is none in
            the pre-train phase) or `"pretrain"` (the pre-train-space loss has a KL term on log P(y) against the
            reference model scored in pre-train space).
    """

    prerl_sample_filter: str = field(
        default="negative",
        metadata={
            "help": 'Which rollouts enter the pre-train-space loss: `"negative"` (advantage < 0, NSR-PreRL), '
            '`"positive"` (advantage > 0, PSR-PreRL) or `"all"`. Excluded rollouts leave the loss '
            "numerator and its token denominator."
        },
    )
    prerl_context: str = field(
        default="token",
        metadata={
            "help": 'What the response is scored after in pre-train space: `"token"` (one token, '
            "`prerl_context_token`; the paper's), `\"chat_frame\"` (the prompt's system turn(s), an "
            "empty user turn and the generation prompt, rendered by the chat template) or "
            '`"chat_frame_history"` (every turn before the question, then an empty user turn and the '
            "generation prompt). The frames need conversational prompts and never hold the question."
        },
    )
    prerl_context_token: str | None = field(
        default=None,
        metadata={
            "help": 'The single token the response is scored after when `prerl_context="token"`. `None` picks'
            " the BOS token, else `<|im_start|>` when the vocabulary has it, else the EOS token."
        },
    )
    prerl_loss_coef: float = field(
        default=0.01,
        metadata={
            "help": "Coefficient of the pre-train-space loss (0.01 in the paper's reference code)."
        },
    )
    prerl_learning_rate_scale: float = field(
        default=1.0,
        metadata={
            "help": "Multiplies the learning rate of the optimizer steps taken in pre-train space (DSRL: the "
            "NSR-PreRL warm-up), on top of the scheduler's; the GRPO steps keep the scheduler's rate."
            " Under Adam the loss scale (`prerl_loss_coef`) mostly cancels, so this is what sets how "
            "far those steps move the weights."
        },
    )
    prerl_scale_rewards: str = field(
        default="none",
        metadata={
            "help": 'Std normalisation of the pre-train-space advantages A = r - group mean: `"none"` (the '
            "paper's), `\"group\"` or `\"batch\"`."
        },
    )
    rl_loss_coef: float = field(
        default=0.0,
        metadata={
            "help": "Coefficient of the conditional GRPO loss (on log P(y|x)) during the pre-train phase. `0`"
            " (default): pre-train space only. Above 0: joint mode, `rl_loss_coef` x conditional loss"
            " + `prerl_loss_coef` x pre-train-space loss, two forward passes per batch."
        },
    )
    rl_sample_filter: str = field(
        default="all",
        metadata={
            "help": 'Which rollouts enter the conditional loss: `"all"` (standard GRPO), `"negative"` '
            '(NSR-RL) or `"positive"` (PSR-RL).'
        },
    )

    prerl_advantage_estimator: str = field(
        default="group_mean",
        metadata={
            "help": "Advantages of the pre-train-space loss: `\"group_mean\"` (r - group mean, the paper's), "
            '`"nsr"` (-1 for wrong answers, 0 for right ones) or `"w_reinforce"` '
            "(+`w_reinforce_positive_weight` for right answers, -1 for wrong ones)."
        },
    )
    rl_advantage_estimator: str = field(
        default="group_mean",
        metadata={
            "help": "Advantages of the conditional loss: `\"group_mean\"` (TRL's GRPO advantages), `\"nsr\"` or "
            '`"w_reinforce"`.'
        },
    )
    w_reinforce_positive_weight: float = field(
        default=0.1,
        metadata={
            "help": "W-REINFORCE's advantage of a right answer (0.1 in Zhu et al. 2025)."
        },
    )
    prerl_kl_space: str = field(
        default="conditional",
        metadata={
            "help": "With `beta > 0`: `\"conditional\"` (the authors' code: the KL term is on log P(y|x) only, "
            'so there is none in the pre-train phase) or `"pretrain"` (the pre-train-space loss has a'
            " KL term on log P(y) against the reference model scored in pre-train space)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_learning_rate(self.learning_rate)
        _check_choice("prerl_advantage_estimator", self.prerl_advantage_estimator, ADVANTAGE_ESTIMATORS)
        _check_choice("rl_advantage_estimator", self.rl_advantage_estimator, ADVANTAGE_ESTIMATORS)
        _check_choice("prerl_kl_space", self.prerl_kl_space, KL_SPACES)
        _check_choice("prerl_sample_filter", self.prerl_sample_filter, SAMPLE_FILTERS)
        _check_choice("rl_sample_filter", self.rl_sample_filter, SAMPLE_FILTERS)
        _check_choice("prerl_scale_rewards", self.prerl_scale_rewards, PRERL_SCALE_REWARDS)
        for name, advice in (("prerl_loss_coef", "the paper uses 0.01"), ("rl_loss_coef", "0 disables joint mode")):
            if not math.isfinite(value := getattr(self, name)) or value < 0:
                raise ValueError(f"{name}={value} must be a finite number >= 0 ({advice}).")
        if not math.isfinite(self.w_reinforce_positive_weight):
            raise ValueError(
                f"w_reinforce_positive_weight={self.w_reinforce_positive_weight} must be a finite number (default 0.1)."
            )
        _check_choice("prerl_context", self.prerl_context, PRETRAIN_CONTEXTS)
        if self.prerl_context != "token" and self.prerl_context_token is not None:
            raise ValueError(
                f"prerl_context_token={self.prerl_context_token!r} is only used with prerl_context='token', not "
                f"{self.prerl_context!r}: drop one of the two."
            )
        scale = self.prerl_learning_rate_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
            raise ValueError(
                f"prerl_learning_rate_scale={scale!r} must be a finite number >= 0 (1.0 keeps learning_rate)."
            )
        if scale != 1.0 and self.rl_loss_coef > 0:
            raise ValueError(
                f"prerl_learning_rate_scale={scale!r} with rl_loss_coef={self.rl_loss_coef!r}: a joint-mode step "
                "updates both losses at once, so there is no pre-train-space step to scale. Leave the scale at 1.0."
            )


@dataclass
class DSRLConfig(PreRLConfig):
    r"""
    Configuration for [`DSRLTrainer`] (Dual Space RL): NSR-PreRL for `dsrl_switch_step` optimizer steps, then standard
    GRPO on log P(y|x).

    Parameters (on top of [`PreRLConfig`]):
        dsrl_switch_step (`int`, defaults to `20`):
            First optimizer step of the GRPO phase (10 to 25 recommended; the paper uses 20). A generation batch is
            scored in one space only: the switch happens at the first generation batch that starts at or after this
            step. `DSRLTrainer(switch_criterion=...)` replaces this rule.
        dsrl_sync_ref_at_switch (`bool`, defaults to `True`):
            Copy the policy weights into the reference model at the switch (when there is a reference model and `beta >
            0`).
        dsrl_reset_optimizer (`bool`, defaults to `False`):
            Reset the optimizer state at the switch (the paper keeps it).
    """

    dsrl_switch_step: int = field(
        default=20,
        metadata={
            "help": "First optimizer step of the GRPO phase (10 to 25 recommended; the paper uses 20). A "
            "generation batch is scored in one space only: the switch happens at the first generation"
            " batch that starts at or after this step. `DSRLTrainer(switch_criterion=...)` replaces "
            "this rule."
        },
    )
    dsrl_sync_ref_at_switch: bool = field(
        default=True,
        metadata={
            "help": "Copy the policy weights into the reference model at the switch (when there is a "
            "reference model and `beta > 0`)."
        },
    )
    dsrl_reset_optimizer: bool = field(
        default=False,
        metadata={
            "help": "Reset the optimizer state at the switch (the paper keeps it)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.dsrl_switch_step, int) or self.dsrl_switch_step < 0:
            raise ValueError(
                f"dsrl_switch_step={self.dsrl_switch_step!r} must be a non-negative integer "
                "(the optimizer step of the switch to GRPO; the paper uses 20)."
            )
