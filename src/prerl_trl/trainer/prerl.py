"""PreRLTrainer: thin hooks on TRL's GRPOTrainer.

What changes against GRPO, and where:

- `_generate_and_score_completions`: generation, rewards and TRL's conditional advantages run unchanged. Afterwards,
  for a batch in the pre-train phase, we add the pre-train-space advantages (r - group mean), the sample-filter mask
  and, when TRL needs them, the old-policy and reference log-probs scored in pre-train space. The batch carries its
  phase (`prerl_active`), so a batch is never scored in both spaces.
- The batch also carries each row's pre-train-space context (`prerl_context_ids` / `prerl_context_mask`: the single
  context token, or the chat frame without the question, `args.prerl_context`), and every pre-train-space log-prob
  is taken on `[context] + completion` (positions restarting at 0), built by `pretrain_space.build_marginal_inputs`.
- `_compute_loss`: TRL's loss runs on a *view* of the batch: the context in place of the prompt, pre-train-space
  advantages, the filtered loss mask (as TRL's `tool_mask`, so excluded rollouts leave the numerator and the token
  denominator) and the kept-token count as `num_items_in_batch`. Joint mode adds TRL's conditional loss on the
  unmodified batch. A step in pre-train space runs at `prerl_learning_rate_scale` x the scheduler's learning rate.

vLLM's importance-sampling correction keeps comparing vLLM's sampling log-probs with the trainer's *conditional*
log-probs (TRL computes them during generation, before we score anything in pre-train space), so the correction stays
a correction of the sampling distribution y ~ P(.|x) in both phases.

The route of one generation batch, hop by hop (pre-train phase; `(TRL)` marks a call into `grpo_trainer.py`, `[x]` the
module of a helper; every TRL name used is in `trl_internals.py`'s table):

1. (TRL) `_prepare_inputs` calls `_generate_and_score_completions(inputs)`.
2. `_pretrain_phase(mode)` decides the phase, once per batch (DSRL: `dsrl.py`, decision in `switch.py`). A
   `GenerationBatch` is made: mode, phase, group size.
3. `_trl_generation_batch(inputs, batch)` runs (TRL) `_generate_and_score_completions`, which calls back
   `_calculate_rewards` (fills `batch.rewards_per_func`, `batch.completions`: the one value that must be handed over
   through the trainer, `_batch_in_progress`, for the length of the call) and `_get_per_token_logps_and_entropies`
   (scoring mode `_scoring`: "skip" for the conditional old-policy pass that nothing reads).
4. `_flag_phase_and_missing_rewards(output, batch)`: `batch.no_reward`; `prerl_active` / `prerl_no_reward` into the batch.
5. `_log_behaviors(mode, batch.completions)` [behaviors]; `combine_rewards` [advantages].
6. `_add_context` [pretrain_space]; `_add_pretrain_space_fields(output, batch, rewards)` [advantages]: the
   `prerl_*` tensors, and `_marginal_logps` [compaction, pretrain_space] for old-policy / reference log-probs.
7. Joint mode: `_apply_conditional_options(output, batch, rewards)`. `replace_logged_advantages` [trl_internals].
8. (TRL) splits and shuffles the batch dict; everything the loss needs is in it, as tensors.
9. `_compute_loss(model, inputs)`: the phase from `prerl_active`; `_pretrain_view` / `_compact` [compaction];
   `_weighted_loss` runs (TRL) `_compute_loss` inside `_marginal_scoring()`, which calls back
   `_get_per_token_logps_and_entropies` and collects the policy's log-probs for `_log_marginal_logp`.
10. `_compute_loss` ends the micro-batch (`_end_micro_batch`, [optimizer_step]): the phase and no-reward flag go into
    `_step_window` and the phase sets the learning rate; before the optimizer step the callbacks
    read it (`_CountStepsForCard`, `_SkipUpdateWithoutReward`, in `optimizer_step.py`).

Values handed from one hook to another through the trainer: `_batch_in_progress` (step 3), `_scoring` (steps 3, 9;
TRL calls the scorer itself, so the mode cannot be an argument) and `_step_window` (step 10, from the loss to the
optimizer step). Everything else travels as an argument (`GenerationBatch`) or in the batch.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from ..advantages import combine_rewards, estimate_advantages, sample_filter_mask
from ..behaviors import behavior_metrics
from ..compaction import compact_batch, even_chunks, kept_rows, pad_rows, scatter_rows
from ..config import PreRLConfig
from ..guards import NonFiniteGuard
from ..pretrain_space import (
    PretrainContext,
    build_marginal_inputs,
    chat_template_renderer,
    resolve_context_token_id,
)
from ..vllm_server import check_vllm_server
from .card import PRERL_CITATION, ModelCardMixin
from .optimizer_step import OptimizerStepMixin
from .trl_internals import override_attrs, replace_logged_advantages, scoring_kwargs
from .utils import checked_reward, quiet_checkpointing_deprecations

logger = logging.getLogger(__name__)
# Loss aggregations for which dropping the rows whose loss mask is all zero changes neither loss nor gradients: their
# denominators count kept tokens only (per micro-batch for bnpo, over the batch for dapo / cispo).
ROW_EXACT_LOSS_TYPES = ("dapo", "bnpo", "cispo")


@dataclass
class GenerationBatch:
    """What one generation batch's hooks learn and the later ones need, passed as an argument from hook to hook.

    Built in `_generate_and_score_completions` before TRL's generation; `_calculate_rewards` (called by TRL inside it)
    fills `rewards_per_func` and `completions`. What the loss needs travels on in the batch dict as tensors
    (`prerl_active`, `prerl_no_reward`, ...), since TRL splits and shuffles that dict before `_compute_loss`.
    """

    mode: str  # "train" or "eval"
    pretrain: bool  # the phase: scored in pre-train space (NSR-PreRL / PreRL), or GRPO's
    num_generations: int  # the group size
    rewards_per_func: torch.Tensor | None = None  # (rows of all processes, reward functions), NaN for None
    completions: list | None = None  # this process's completions (texts or message lists)
    rows: slice = field(default_factory=lambda: slice(0))  # this process's rows in tensors gathered over processes
    no_reward: bool = False  # every reward of the batch is None

    @property
    def rewards(self) -> torch.Tensor:
        """Not yet weighted: see `combine_rewards`."""
        assert self.rewards_per_func is not None, "read before TRL's _calculate_rewards ran"
        return self.rewards_per_func


@dataclass
class _Scoring:
    """How `_get_per_token_logps_and_entropies` scores now. TRL calls that method itself (generation, loss), so this
    cannot be an argument: it is set for the length of a call (`_marginal_scoring`, `_trl_generation_batch`).
    `conditional`: TRL's log P(y|x); `marginal`: log P(y | context), the last call's log-probs kept in `logps` (what
    the loss logs); `skip`: TRL's conditional old-policy pass that nothing reads (zeros, no forward)."""

    kind: str = "conditional"
    logps: torch.Tensor | None = None


class PreRLTrainer(OptimizerStepMixin, NonFiniteGuard, ModelCardMixin, GRPOTrainer):
    """GRPO whose loss scores rollouts in pre-train space (PreRL / NSR-PreRL / PSR-PreRL, and joint mode).

    Rollouts are generated as in GRPO, conditioned on the question. The loss scores each rollout *without its prompt*,
    as log P(y) after one context token, with advantages A = r - group mean and the rollouts chosen by
    `args.prerl_sample_filter`. Takes the same arguments as [`~trl.GRPOTrainer`]; `args` must be a [`PreRLConfig`].
    """

    _tag_names = ["trl", "grpo", "prerl"]
    _name = "PreRL"
    _paper = {
        "title": "From P(y|x) to P(y): Investigating Reinforcement Learning in Pre-train Space",
        "id": "2604.14142",
        "citation": PRERL_CITATION + "\n\n" + GRPOTrainer._paper["citation"],
    }
    _config_class: type[PreRLConfig] = PreRLConfig

    def __init__(self, model, reward_funcs=None, args: PreRLConfig | None = None, **kwargs: Any) -> None:
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = self._config_class(output_dir=f"{str(name).split('/')[-1]}-{self._name}")
        if not isinstance(args, self._config_class):
            passed = type(args).__name__
            raise TypeError(
                f"args must be a {self._config_class.__name__}, got {passed}. Build it with "
                f"{self._config_class.__name__}(...) instead of {passed}(...): it adds the fields of "
                f"{self._name}."
            )
        self._check_options(args)
        quiet_checkpointing_deprecations()
        # Server mode against an address where nothing answers: fail in seconds, naming the URL (TRL would wait).
        check_vllm_server(args, model=model if isinstance(model, str) else None)
        super().__init__(model, reward_funcs, args=args, **kwargs)
        columns = getattr(self.train_dataset, "column_names", None) or []
        if self._is_vlm or "image" in columns or "images" in columns:
            raise ValueError(
                "PreRLTrainer does not support multimodal (vision-language) models or datasets with images: "
                "pre-train-space scoring removes the prompt, and with it the images. Use a text-only model and "
                "dataset."
            )
        self._context_token_id = resolve_context_token_id(self._tokenizer, args.prerl_context_token)
        # Frames are rendered as TRL renders the prompts: same template, tools and template arguments.
        render = chat_template_renderer(self.processing_class, tools=self.tools or None,
                                        chat_template=self.chat_template, **self.chat_template_kwargs)
        self._pretrain_context = PretrainContext(args.prerl_context, self._context_token_id, render)
        if args.prerl_context != "token" and len(columns) and "prompt" in columns and len(self.train_dataset):
            self._pretrain_context.ids(self.train_dataset[0]["prompt"])  # plain-text prompts fail here, not mid-run
        self._scoring = _Scoring()
        self._batch_in_progress: GenerationBatch | None = None  # only while TRL makes a batch: _calculate_rewards
        self._init_optimizer_step()
        self.reward_funcs = [checked_reward(f, n) for f, n in zip(self.reward_funcs, self.reward_func_names, strict=True)]

    # ----------------------------------------------------------------------------------------------------------------
    # Phase
    def _pretrain_phase(self, mode: str) -> bool:
        """Whether the generation batch being made now is scored in pre-train space: called once per generation
        batch, before generation (DSRL decides and performs its switch here). PreRL: always."""
        return True

    # ----------------------------------------------------------------------------------------------------------------
    # Construction-time checks
    def _check_options(self, args: PreRLConfig) -> None:
        """Refuse the GRPOConfig options that the pre-train-space loss would silently ignore. PreRLTrainer trains in
        pre-train space for the whole run, so they would never act; DSRLTrainer honours them after its switch."""
        refused = {
            "loss_type": (args.loss_type != "dapo", "the pre-train-space loss is the paper's token mean over kept "
                          "tokens ('dapo'), whatever loss_type says"),
            "multi_objective_aggregation": (
                args.multi_objective_aggregation != "sum_then_normalize",
                "pre-train-space advantages are r - group mean of the weighted reward sum"),
            "use_adaptive_entropy": (args.use_adaptive_entropy, "the controller regulates the entropy of P(y|x), "
                                     "which the pre-train-space loss does not score; use a fixed entropy_coef"),
            "off_policy_mask_threshold": (
                args.off_policy_mask_threshold is not None,
                "it compares conditional sampling log-probs, which pre-train-space log-probs are not"),
        }
        for field_name, (bad, reason) in refused.items():
            if bad:
                raise ValueError(
                    f"{field_name}={getattr(args, field_name)!r} is not supported by {type(self).__name__}: {reason}. "
                    f"Leave it at its default, or use DSRLTrainer, whose GRPO phase honours it."
                )

    # ----------------------------------------------------------------------------------------------------------------
    # Scoring in pre-train space
    @contextmanager
    def _marginal_scoring(self) -> Iterator[_Scoring]:
        """Score in pre-train space inside this block; yields the `_Scoring` whose `logps` holds the last scores."""
        scoring = _Scoring("marginal")
        with override_attrs(self, _scoring=scoring):
            yield scoring

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        scoring = self._scoring
        if scoring.kind == "skip":
            # TRL's conditional old-policy pass, which nothing reads in this batch: skip the forward.
            return input_ids.new_zeros((input_ids.size(0), logits_to_keep), dtype=torch.float32), None, None
        if scoring.kind == "conditional":
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        # `input_ids` is already `[context] + completion` (the loss's view, or `_marginal_logps`).
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **scoring_kwargs(kwargs)
        )
        scoring.logps = logps.detach()
        return logps, entropies, aux_loss

    @torch.no_grad()
    def _marginal_logps(self, model, output: dict[str, Any], loss_mask: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """Per-token log P(y | context) of the rows of `loss_mask` that enter the loss, zeros elsewhere (no gradient).

        Only the kept rows are forwarded, trimmed to their last loss token, in chunks of `chunk_size` rows. With several
        processes every process runs the same number of forward passes (an idle one scores a 1-token dummy), so that
        the parameter gathers of ZeRO-3 / FSDP line up.
        """
        completion_ids = output["completion_ids"]
        rows, width = kept_rows(loss_mask)
        num_rows = rows.numel()
        num_chunks = self._most_over_processes(-(-num_rows // chunk_size))
        padded = pad_rows(rows, max(num_rows, 1))  # one row to stand in for the dummy pass when none is kept
        ids, mask = build_marginal_inputs(
            completion_ids[padded, :width], output["completion_mask"][padded, :width],
            output["prerl_context_ids"][padded], output["prerl_context_mask"][padded],
        )
        context = ids.size(1) - width
        pieces = []
        with self._marginal_scoring(), disable_gradient_checkpointing(model, self.args.gradient_checkpointing_kwargs):
            for start, end in even_chunks(num_rows, num_chunks) if num_chunks else []:
                if start == end:  # nothing of ours left to score: a dummy pass keeps the collectives in step
                    self._get_per_token_logps_and_entropies(model, ids[:1, : context + 1], mask[:1, : context + 1], 1)
                    continue
                logps, _, _ = self._get_per_token_logps_and_entropies(model, ids[start:end], mask[start:end], width)
                pieces.append(logps.float())
        if not pieces:
            return torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)
        return scatter_rows(torch.cat(pieces), rows, tuple(completion_ids.shape))

    def _most_over_processes(self, value: int) -> int:
        """The largest `value` over all processes (itself with one process): counts they must agree on."""
        if self.accelerator.num_processes == 1:
            return value
        device = self.accelerator.device
        return int(self.accelerator.gather(torch.tensor([value], device=device)).max().item())

    def _marginal_ref_logps(self, output: dict[str, Any], loss_mask: torch.Tensor, chunk_size: int) -> torch.Tensor:
        if self.ref_model is not None:
            return self._marginal_logps(self.ref_model, output, loss_mask, chunk_size)
        # PEFT: the reference is the adapter-disabled model (or the "ref" adapter), as in GRPOTrainer.
        unwrapped = self.accelerator.unwrap_model(self.model)
        with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
            return self._marginal_logps(self.model, output, loss_mask, chunk_size)

    # ----------------------------------------------------------------------------------------------------------------
    # Generation batch
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self._batch_in_progress is not None:  # called by TRL inside `_trl_generation_batch`
            self._batch_in_progress.rewards_per_func = rewards_per_func
            self._batch_in_progress.completions = completions
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        """TRL's generation batch, then: the phase and no-reward flags, the pre-train-space fields (pre-train phase)
        and the conditional-loss options (GRPO phase, or joint mode)."""
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        batch = GenerationBatch(mode, self._pretrain_phase(mode), num_generations)
        output = self._trl_generation_batch(inputs, batch)
        # The completions table will show the loss's advantages when they are not TRL's: keep TRL's to check its log.
        replaces_advantages = batch.pretrain or self.args.rl_advantage_estimator != "group_mean"
        trl_advantages = self.accelerator.gather(output["advantages"]) if replaces_advantages else None
        batch.rows = self._local_rows(output["completion_ids"].size(0))
        self._flag_phase_and_missing_rewards(output, batch)
        self._log_behaviors(mode, batch.completions)
        rewards = combine_rewards(batch.rewards, self.reward_weights)
        used = None  # the advantages of the loss, all processes, when they are not TRL's
        if batch.pretrain:
            self._add_context(output, [x["prompt"] for x in inputs])
            used = self._add_pretrain_space_fields(output, batch, rewards)
        if not batch.pretrain or self.args.rl_loss_coef > 0:
            conditional = self._apply_conditional_options(output, batch, rewards)
            used = conditional if used is None else used
        if used is not None:  # the completions table shows the advantages the loss used
            assert trl_advantages is not None
            replace_logged_advantages(self._logs, trl_advantages, used)
        return output

    def _trl_generation_batch(self, inputs, batch: GenerationBatch) -> dict[str, Any]:
        """GRPOTrainer's generation, rewards and conditional advantages. In the pre-train phase alone (no joint mode),
        the conditional reference log-probs would be thrown away, so TRL skips them (beta 0 for the call), and the
        conditional old-policy pass is skipped too unless vLLM's importance-sampling correction reads it."""
        pretrain_only = batch.pretrain and self.args.rl_loss_coef == 0
        vllm_correction = self.use_vllm and self.vllm_importance_sampling_correction
        skip_conditional_old = pretrain_only and not vllm_correction
        overrides: dict[str, Any] = {"beta": 0.0} if pretrain_only else {}
        scoring = _Scoring("skip" if skip_conditional_old else "conditional")
        with override_attrs(self, _scoring=scoring, _batch_in_progress=batch, **overrides):
            output = super()._generate_and_score_completions(inputs)
        if skip_conditional_old:
            output.pop("old_per_token_logps", None)
        return output

    def _local_rows(self, batch: int) -> slice:
        """This process's rows in tensors gathered over processes (rewards, advantages)."""
        return slice(self.accelerator.process_index * batch, (self.accelerator.process_index + 1) * batch)

    def _flag_phase_and_missing_rewards(self, output: dict[str, Any], state: GenerationBatch) -> None:
        """Carry the batch's phase (`prerl_active`) and whether it is skipped for want of any reward
        (`prerl_no_reward`, pre-train phase only: in the GRPO phase such a batch is left to TRL, exactly as
        GRPOTrainer handles it). Sets `state.no_reward`: whether every reward of the batch is None."""
        batch, device = output["completion_ids"].size(0), output["completion_ids"].device
        no_reward = state.no_reward = bool(torch.isnan(state.rewards).all())
        pretrain = state.pretrain
        if no_reward and pretrain:
            warnings.warn(
                f"Every reward in this batch is None (step {self.state.global_step}): the batch is skipped, it "
                "contributes no gradient, and when every batch of an optimizer step is like it, the optimizer step is "
                "skipped. Check that the reward functions can parse the dataset's answers.",
                stacklevel=3,
            )
        output["prerl_active"] = torch.full((batch,), float(pretrain), device=device)
        output["prerl_no_reward"] = torch.full((batch,), float(no_reward and pretrain), device=device)

    def _add_context(self, output: dict[str, Any], prompts: list[Any]) -> None:
        """Each row's pre-train-space context (`prerl_context_ids`, left-padded, and `prerl_context_mask`)."""
        device = output["completion_ids"].device
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._context_token_id
        output["prerl_context_ids"], output["prerl_context_mask"] = self._pretrain_context.batch(prompts, pad, device)

    def _add_pretrain_space_fields(self, output: dict[str, Any], batch: GenerationBatch,
                                   rewards: torch.Tensor) -> torch.Tensor:
        """Pre-train-space advantages (r - group mean), the sample-filter loss mask and its token count, and the
        old-policy and reference log-probs scored in pre-train space when the loss needs them. Returns the advantages
        (all processes)."""
        mode, rows = batch.mode, batch.rows
        completion_mask = output["completion_mask"]
        loss_mask = completion_mask if "tool_mask" not in output else completion_mask * output["tool_mask"]
        advantages = estimate_advantages(
            rewards, batch.num_generations, self.args.prerl_advantage_estimator, self.args.prerl_scale_rewards,
            self.args.w_reinforce_positive_weight,
        )
        keep = sample_filter_mask(advantages, self.args.prerl_sample_filter) & ~torch.isnan(rewards)
        keep = keep & ~torch.tensor(batch.no_reward, device=keep.device)
        prerl_mask = loss_mask * keep[rows].unsqueeze(1).to(loss_mask.dtype)
        output["prerl_advantages"] = advantages[rows]
        output["prerl_loss_mask"] = prerl_mask
        output["prerl_num_items"] = self.accelerator.gather(prerl_mask.sum()).sum()
        self._metrics[mode]["prerl/kept_frac"].append(keep.float().mean().item())

        chunk = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        # The ratio needs old log-probs only when the policy moves between generation and loss (TRL's rule).
        generate_every = self.args.steps_per_generation * self.num_iterations
        if mode == "train" and self.args.gradient_accumulation_steps % generate_every != 0:
            output["prerl_old_per_token_logps"] = self._marginal_logps(self.model, output, prerl_mask, chunk)
        if self.beta != 0.0 and self.args.prerl_kl_space == "pretrain":
            output["prerl_ref_per_token_logps"] = self._marginal_ref_logps(output, prerl_mask, chunk)
        return advantages

    def _apply_conditional_options(self, output: dict[str, Any], batch: GenerationBatch,
                                   rewards: torch.Tensor) -> torch.Tensor | None:
        """The conditional loss's options on top of TRL's batch: another advantage estimator (NSR / W-REINFORCE)
        and the conditional sample filter, applied through TRL's `tool_mask`. Returns the advantages (all processes)
        when they are not TRL's."""
        mode, rows, pretrain = batch.mode, batch.rows, batch.pretrain
        skip_no_reward = batch.no_reward and pretrain
        completion_mask = output["completion_mask"]
        conditional = None
        if self.args.rl_advantage_estimator != "group_mean":  # NSR / W-REINFORCE instead of TRL's advantages
            conditional = estimate_advantages(
                rewards, batch.num_generations, self.args.rl_advantage_estimator,
                positive_weight=self.args.w_reinforce_positive_weight,
            )
            output["advantages"] = conditional[rows].to(output["advantages"].dtype)
        keep = sample_filter_mask(output["advantages"], self.args.rl_sample_filter)
        keep = keep & ~torch.tensor(skip_no_reward, device=keep.device)
        if self.args.rl_sample_filter != "all" or skip_no_reward:
            tool_mask = output.get("tool_mask", torch.ones_like(completion_mask))
            output["tool_mask"] = tool_mask * keep.unsqueeze(1).to(tool_mask.dtype)
            output["num_items_in_batch"] = self.accelerator.gather((completion_mask * output["tool_mask"]).sum()).sum()
        if not pretrain:
            kept = self.accelerator.gather(keep.float())
            self._metrics[mode]["prerl/kept_frac"].append(kept.mean().item())
        return conditional

    def _log_behaviors(self, mode: str, completions: list | None) -> None:
        """Log `behaviors/transition` and `behaviors/reflection` (mean per completion)."""
        texts = list(completions or [])  # plain strings or message lists: behavior_metrics takes both
        if not texts:
            return
        local = behavior_metrics(texts)
        names = sorted(local)
        stats = torch.tensor([local[n] * len(texts) for n in names] + [len(texts)], device=self.accelerator.device)
        totals = self.accelerator.reduce(stats, reduction="sum")
        for i, name in enumerate(names):
            self._metrics[mode][name].append((totals[i] / totals[-1]).item())

    # ----------------------------------------------------------------------------------------------------------------
    # Loss
    @contextmanager
    def _metrics_namespace(self, mode: str, prefix: str) -> Iterator[None]:
        """Move the metrics TRL's loss logs inside this block under `prefix` (e.g. `prerl/entropy`)."""
        metrics = self._metrics[mode]
        before = {key: len(values) for key, values in metrics.items()}
        yield
        for key in list(metrics):
            start = before.get(key, 0)
            new = metrics[key][start:]
            if not new:
                continue
            del metrics[key][start:]
            if not metrics[key]:
                del metrics[key]
            metrics[prefix + key].extend(new)

    def _pretrain_view(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The batch as TRL's loss should see it in pre-train space: pre-train-space advantages, old and reference
        log-probs, the filtered loss mask (as TRL's `tool_mask`) and kept-token count; only the rows in the loss,
        trimmed to their last kept token, and the pre-train-space context in place of the prompt (TRL's loss scores
        `[context] + completion`, as `build_marginal_inputs` assembles it)."""
        dropped = ("old_per_token_logps", "ref_per_token_logps", "prerl_context_ids", "prerl_context_mask")
        view = {k: v for k, v in inputs.items() if k not in dropped}
        view["prompt_ids"], view["prompt_mask"] = inputs["prerl_context_ids"], inputs["prerl_context_mask"]
        view["advantages"] = inputs["prerl_advantages"]
        view["tool_mask"] = inputs["prerl_loss_mask"]
        view["num_items_in_batch"] = inputs["prerl_num_items"]
        for key in ("old_per_token_logps", "ref_per_token_logps"):
            if f"prerl_{key}" in inputs:
                view[key] = inputs[f"prerl_{key}"]
        return self._compact(view)

    def _compact(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Only the rows with a loss token, trimmed after the last one. With a token-mean loss whose denominator was
        counted on the whole batch ("dapo"), this gives the loss and gradients of the masked batch.

        Every process keeps the same number of rows (the most any process keeps, at least one), the extra ones with a
        zero loss mask: TRL's loss gathers per-row metrics across processes, and a process without kept rows must
        still run its forward and backward for the collectives of DDP / ZeRO-3 / FSDP."""
        rows, width = kept_rows(batch["completion_mask"] * batch["tool_mask"])
        kept = rows.numel()
        target = self._most_over_processes(max(kept, 1))
        batch = compact_batch(batch, pad_rows(rows, target), width)
        if target > kept:
            batch["tool_mask"][kept:] = 0
        return batch

    def _conditional_loss(self, model, inputs: dict[str, Any], coef: float, with_extras: bool) -> torch.Tensor:
        """TRL's conditional loss. With a sample filter (NSR-RL / PSR-RL) the filtered-out rows are not forwarded."""
        if self.args.rl_sample_filter != "all" and self.loss_type in ROW_EXACT_LOSS_TYPES:
            inputs = self._compact(inputs)
        return self._weighted_loss(model, inputs, coef, with_extras)

    def _weighted_loss(self, model, inputs: dict[str, Any], coef: float, with_extras: bool) -> torch.Tensor:
        """`coef` x TRL's policy loss, with TRL's entropy bonus and MoE router loss added once and unscaled when
        `with_extras` (and left out otherwise), so that joint mode does not count them twice."""
        if not with_extras:
            overrides = {"_entropy_bonus_enabled": False, "aux_loss_enabled": False}
        elif coef not in (0.0, 1.0):
            overrides = {"entropy_coef": self.entropy_coef / coef, "router_aux_loss_coef": self.router_aux_loss_coef / coef}
        else:
            overrides = {}
        with override_attrs(self, **overrides):
            loss = super()._compute_loss(model, inputs)
        return loss if coef == 1.0 else coef * loss

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        pretrain = bool(inputs["prerl_active"][0].item()) if "prerl_active" in inputs else False
        joint = self.args.rl_loss_coef > 0
        if not pretrain:
            loss = self._conditional_loss(model, inputs, 1.0, with_extras=True)
        else:
            view = self._pretrain_view(inputs)
            # The pre-train-space loss is the paper's: token mean over kept tokens whatever loss_type says, no
            # off-policy mask (it compares conditional log-probs), adaptive entropy paused (it regulates P(y|x)).
            options: dict[str, Any] = {"loss_type": "dapo", "off_policy_mask_threshold": None}
            if self.args.prerl_kl_space == "conditional":  # the authors' KL is on log P(y|x) only
                options["beta"] = 0.0
            if self.use_adaptive_entropy:
                options["_entropy_bonus_enabled"] = False
            # Its metrics keep TRL's names (entropy, clip_ratio/...), prefixed `prerl/` only beside joint mode's
            # conditional loss, which logs under the plain names.
            names = self._metrics_namespace(mode, "prerl/") if joint else contextlib.nullcontext()
            with self._marginal_scoring() as scoring, names, override_attrs(self, **options):
                loss = self._weighted_loss(model, view, self.args.prerl_loss_coef, with_extras=not joint)
            self._log_marginal_logp(mode, view, scoring.logps)
            if joint:
                loss = self._backward_early(loss)
                loss = loss + self._conditional_loss(model, inputs, self.args.rl_loss_coef, with_extras=True)
        self._metrics[mode]["prerl/active"].append(float(pretrain))
        if mode == "train":
            no_reward = bool(inputs["prerl_no_reward"][0].item()) if "prerl_no_reward" in inputs else None
            self._end_micro_batch(pretrain, no_reward)
        return loss

    def _backward_early(self, loss: torch.Tensor) -> torch.Tensor:
        """Joint mode: backpropagate the pre-train-space loss now, before the conditional forward, so that the two
        autograd graphs are never alive at once; return it detached (it still counts in the logged loss).

        This reproduces what `Trainer.training_step` does with the returned loss (TRL's loss is already scaled for
        gradient accumulation). Under DeepSpeed the engine's backward also advances its accumulation state, so there
        both graphs are kept and backpropagated together, as without this hook."""
        if not (self.model.training and torch.is_grad_enabled() and loss.requires_grad) or self.is_deepspeed_enabled:
            return loss
        self.accelerator.backward(loss)
        return loss.detach()

    def _log_marginal_logp(self, mode: str, view: dict[str, Any], logps: torch.Tensor) -> None:
        """`prerl/marginal_logp`: mean per-token log P(y) over the tokens in the pre-train-space loss (`logps`, the
        policy's, scored by TRL's loss). A step with no token in the loss logs nothing (a log-prob of 0 would read as
        certainty)."""
        logps = logps.float()
        mask = (view["completion_mask"] * view["tool_mask"]).float()
        totals = self.accelerator.reduce(torch.stack([(logps * mask).sum(), mask.sum()]), reduction="sum")
        if totals[1].item() > 0:
            self._metrics[mode]["prerl/marginal_logp"].append((totals[0] / totals[1]).item())

