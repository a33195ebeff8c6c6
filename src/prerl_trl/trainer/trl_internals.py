"""Every reach into TRL's (and transformers' Trainer's) internals, listed once, and the adapters around the fragile ones.

The trainers subclass `trl.GRPOTrainer` (pinned: trl==1.16) and copy none of its method bodies; they do rely on the
private names below. `tests/test_trl_internals.py` parses this table and checks each row against the installed TRL
(a method or function exists, an attribute is set on a built trainer, a batch key is in a generation batch): a TRL
upgrade that renames one fails there, by name, before it fails mid-run.

| kind      | name                                  | used by                                 | what breaks if it changes |
| --------- | ------------------------------------- | --------------------------------------- | ------------------------- |
| method    | _generate_and_score_completions       | PreRLTrainer (hook)                     | no pre-train-space fields: every batch is GRPO's |
| method    | _calculate_rewards                    | PreRLTrainer (hook)                     | no rewards for the pre-train-space advantages |
| method    | _get_per_token_logps_and_entropies    | PreRLTrainer (hook)                     | scoring modes ignored; keywords: see below |
| method    | _compute_loss                         | PreRLTrainer (hook, super call)         | the loss: every phase |
| method    | _get_learning_rate                    | PreRLTrainer (prerl_learning_rate_scale) | logged learning_rate |
| method    | _save_checkpoint                      | DSRLTrainer (dsrl_state.json)           | resume after the switch |
| method    | _load_optimizer_and_scheduler         | DSRLTrainer (dsrl_state.json)           | resume after the switch |
| method    | _get_output_dir                       | DSRLTrainer (checkpoint folder)         | dsrl_state.json written elsewhere |
| attribute | _metrics                              | metrics (prerl/*, behaviors/*)          | metrics not logged |
| attribute | _logs                                 | replace_logged_advantages               | completions table (checked at run time) |
| attribute | beta                                  | generation (0 for the call), loss       | wasted reference pass / KL in the wrong space |
| attribute | entropy_coef                          | joint mode scales it for one call       | entropy bonus counted twice |
| attribute | use_adaptive_entropy                  | loss, construction checks               | controller running on log P(y) |
| attribute | _entropy_bonus_enabled                | joint mode: extras once                 | entropy bonus counted twice |
| attribute | aux_loss_enabled                      | joint mode: extras once                 | MoE router loss counted twice |
| attribute | router_aux_loss_coef                  | joint mode scales it for one call       | router loss scaled by the coefficient |
| attribute | loss_type                             | pre-train-space loss ("dapo")           | the paper's token mean |
| attribute | off_policy_mask_threshold             | pre-train-space loss (off)              | conditional mask on marginal log-probs |
| attribute | reward_weights                        | combine_rewards                         | pre-train-space advantages |
| attribute | reward_funcs                          | checked_reward wrapping                 | reward output check |
| attribute | reward_func_names                     | checked_reward, model card              | names in errors and the card |
| attribute | num_generations                       | group size (train)                      | advantages per group |
| attribute | num_generations_eval                  | group size (eval)                       | advantages per group |
| attribute | use_vllm                              | skip of the conditional old pass        | vLLM IS correction reads a zero tensor |
| attribute | vllm_importance_sampling_correction   | skip of the conditional old pass        | vLLM IS correction reads a zero tensor |
| attribute | ref_model                             | reference scoring, DSRL sync            | KL against the wrong model |
| attribute | _is_vlm                               | construction check (text only)          | images silently dropped |
| attribute | _tokenizer                            | context token, padding                  | construction |
| attribute | tools                                 | chat-frame context                      | frames rendered without tools |
| attribute | chat_template                         | chat-frame context                      | frames rendered with another template |
| attribute | chat_template_kwargs                  | chat-frame context                      | frames rendered with other arguments |
| attribute | _paper                                | model card citation                     | card |
| function  | trl.models.utils.disable_gradient_checkpointing | no-grad pre-train-space scoring | memory / speed of scoring |
| function  | trl.trainer.utils.use_adapter          | PEFT reference in pre-train space       | KL against the adapter |
| function  | trl.trainer.utils.is_async_callable    | checked_reward                          | async rewards wrapped |
| function  | trl.trainer.callbacks.SyncRefModelCallback.sync_target_model | DSRL reference sync | reference not re-synced |
| batch key | prompt_ids                            | pre-train-space view (replaced)         | loss scores the prompt |
| batch key | prompt_mask                           | pre-train-space view (replaced)         | loss scores the prompt |
| batch key | completion_ids                        | every pre-train-space pass              | - |
| batch key | completion_mask                       | loss masks                              | - |
| batch key | advantages                            | view / conditional estimators           | wrong advantages |
| batch key | num_items_in_batch                    | token denominator                       | loss scale |
| batch key | old_per_token_logps                   | dropped / replaced in pre-train space   | conditional log-probs in a marginal ratio |
| batch key | ref_per_token_logps                   | dropped / replaced in pre-train space   | conditional log-probs in a marginal KL |
| batch key | tool_mask                             | loss mask of the sample filters         | filters ignored |

Our own batch keys (`prerl_*`) are tensors, per row or 0-dim: TRL's `split_tensor_dict` / `shuffle_sequence_dict`
break on Python bools and lists. The fragile reaches have adapters here: the keywords of
`_get_per_token_logps_and_entropies` (`scoring_kwargs`) and the log of advantages (`replace_logged_advantages`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def override_attrs(obj: Any, **values: Any) -> Iterator[None]:
    """Temporarily set attributes of `obj`: how the trainers change TRL's attributes (`beta`, `entropy_coef`, ...)
    for the length of one call of its methods, without copying them."""
    saved = {name: getattr(obj, name) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


# The keywords of GRPOTrainer._get_per_token_logps_and_entropies (TRL 1.16) beyond (model, input_ids, attention_mask,
# logits_to_keep): the ones pre-train-space scoring passes on, and the multimodal ones it drops (they carry images,
# which PreRL refuses at construction; a non-None value is an error).
TEXT_KEYWORDS = ("batch_size", "compute_entropy", "compute_aux_loss")
MULTIMODAL_KEYWORDS = (
    "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
    "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
)


def scoring_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that pre-train-space scoring passes on: the text ones. A multimodal one with a value, or a keyword
    this list does not know (a later TRL's), fails loudly rather than being dropped without a word."""
    unknown = sorted(set(kwargs) - set(TEXT_KEYWORDS) - set(MULTIMODAL_KEYWORDS))
    if unknown:
        raise TypeError(
            f"_get_per_token_logps_and_entropies got keyword(s) {unknown} that prerl_trl does not know (written for "
            "trl==1.16): add each to TEXT_KEYWORDS or MULTIMODAL_KEYWORDS in prerl_trl/trainer/trl_internals.py."
        )
    if any(kwargs[k] is not None for k in MULTIMODAL_KEYWORDS if k in kwargs):
        raise ValueError("Pre-train-space scoring got multimodal inputs; PreRL supports text-only models.")
    return {k: v for k, v in kwargs.items() if k in TEXT_KEYWORDS}


def replace_logged_advantages(logs: MutableMapping[str, Any], trl_advantages: torch.Tensor,
                              used: torch.Tensor) -> None:
    """Show in TRL's completions table the advantages the loss used (`used`, one per row of the generation batch, all
    processes) in place of TRL's own.

    TRL 1.16 ends `_generate_and_score_completions` with `_logs["advantages"].extend(all_process_advantages.tolist())`
    (a deque), so its last `len(trl_advantages)` entries are `trl_advantages`, gathered over processes. If they are
    not (TRL logs elsewhere, later, or differently), this raises instead of overwriting other rows."""
    logged = logs["advantages"]
    count = min(len(trl_advantages), getattr(logged, "maxlen", None) or len(trl_advantages))  # deque keeps its last
    tail = list(logged)[-count:] if count else []
    expected = trl_advantages.detach().float().cpu()[len(trl_advantages) - count:]
    same = len(tail) == count and torch.allclose(
        torch.tensor(tail, dtype=torch.float32), expected, rtol=0.0, atol=0.0, equal_nan=True
    )
    if not same:
        raise RuntimeError(
            "TRL's _logs['advantages'] does not end with this batch's advantages: TRL's logging changed (written for "
            "trl==1.16); update prerl_trl/trainer/trl_internals.py:replace_logged_advantages."
        )
    for _ in range(count):
        logged.pop()
    logged.extend(used.tolist())  # a deque of maxlen < len(used) keeps the last ones, as TRL's extend did
