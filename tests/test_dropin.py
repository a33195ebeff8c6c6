"""DSRLTrainer is a drop-in for GRPOTrainer: at switch step 0 it *is* GRPO, bit for bit, whatever the GRPOConfig
options; across a switch its metrics keep TRL's names and its phase never goes back."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import boxed_reward
from trl import GRPOConfig, GRPOTrainer

from prerl_trl import DSRLConfig, DSRLTrainer
from prerl_trl.tiny import toy_dataset

STEPS = 2


def half_none_reward(completions, answer, **kwargs):
    """The boxed reward on even rows, None on odd ones."""
    rewards = boxed_reward(completions, answer)
    return [r if i % 2 == 0 else None for i, r in enumerate(rewards)]


def no_reward(completions, **kwargs):
    return [None] * len(completions)


def length_reward(completion_ids, **kwargs):
    return [len(ids) / 8 for ids in completion_ids]


# Each entry pairs a loss type with another option, to keep the grid short.
GRID = {
    "default": {},
    "grpo_kl": {"loss_type": "grpo", "beta": 0.1},
    "bnpo_mask_truncated": {"loss_type": "bnpo", "mask_truncated_completions": True},
    "dr_grpo_scale_batch": {"loss_type": "dr_grpo", "scale_rewards": "batch"},
    "cispo_sequence_is": {"loss_type": "cispo", "importance_sampling_level": "sequence"},
    "sapo_entropy_bonus": {"loss_type": "sapo", "entropy_coef": 0.1},
    "two_iterations_accumulated_off_policy_mask": {
        "num_iterations": 2, "gradient_accumulation_steps": 2, "per_device_train_batch_size": 8,
        "off_policy_mask_threshold": 0.5,
    },
    "adaptive_entropy_partly_none": {"use_adaptive_entropy": True, "entropy_coef": 0.05, "reward": half_none_reward},
    "all_none_entropy": {"reward": no_reward, "entropy_coef": 0.1},
    "normalize_then_sum": {"reward": [boxed_reward, length_reward], "multi_objective_aggregation": "normalize_then_sum"},
    "lora_kl": {"peft_config": "lora", "beta": 0.1},
    "moe_router_loss": {"moe": True},
}
# Tools and environment_factory: tests/test_tools.py (they need a tool-calling chat template and a forced generate).


def moe_model_dir(directory) -> str:
    """A tiny random Qwen2-MoE model with router logits on (TRL adds its load-balancing loss), saved with the tiny
    tokenizer."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    from prerl_trl.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = Qwen2MoeConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, output_router_logits=True, router_aux_loss_coef=0.01,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2MoeForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def run(trainer_cls, config_cls, model_dir, tmp_path, options):
    options = dict(options)
    reward = options.pop("reward", boxed_reward)
    peft_config = options.pop("peft_config", None)
    tools = {key: options.pop(key) for key in ("tools", "environment_factory") if key in options}
    if peft_config == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    if options.pop("moe", False):
        model_dir = moe_model_dir(tmp_path / f"moe_{trainer_cls.__name__}")
    extra = {"dsrl_switch_step": 0} if trainer_cls is DSRLTrainer else {}
    values = dict(
        output_dir=str(tmp_path / trainer_cls.__name__), per_device_train_batch_size=16, num_generations=4,
        max_completion_length=8, max_steps=STEPS, learning_rate=1e-3, logging_steps=1, report_to="none", bf16=False,
        use_cpu=True, save_strategy="no", seed=11, disable_tqdm=True,
    )
    values.update(options)
    args = config_cls(**values, **extra)
    trainer = trainer_cls(model_dir, reward_funcs=reward, args=args, train_dataset=toy_dataset(repeat=4),
                          peft_config=peft_config, **tools)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    keys = [set(h) for h in trainer.state.log_history if "loss" in h]
    return [p.detach().clone() for p in trainer.model.parameters()], losses, keys


@pytest.mark.parametrize("name", sorted(GRID))
def test_dsrl_at_switch_step_zero_is_grpo(tiny_model_dir, tmp_path, name):
    grpo_params, grpo_losses, grpo_keys = run(GRPOTrainer, GRPOConfig, tiny_model_dir, tmp_path, GRID[name])
    dsrl_params, dsrl_losses, dsrl_keys = run(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, GRID[name])
    assert len(grpo_losses) == STEPS
    assert dsrl_losses == grpo_losses
    assert all(torch.equal(a, b) for a, b in zip(grpo_params, dsrl_params, strict=True))
    for grpo, dsrl in zip(grpo_keys, dsrl_keys, strict=True):
        assert grpo <= dsrl, f"metrics GRPOTrainer logs but DSRL does not: {sorted(grpo - dsrl)}"


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "cispo"])
def test_metric_names_and_phase_trace_across_the_switch(tiny_model_dir, tmp_path, loss_type):
    args = DSRLConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_generations=4, max_completion_length=8,
        max_steps=4, dsrl_switch_step=2, learning_rate=1e-3, logging_steps=1, report_to="none", bf16=False,
        use_cpu=True, save_strategy="no", seed=3, disable_tqdm=True, loss_type=loss_type, beta=0.05,
        prerl_kl_space="pretrain",
    )
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset(repeat=4))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["prerl/active"] for h in logs] == [1.0, 1.0, 0.0, 0.0]
    for h in logs:  # the loss being optimised is logged under TRL's names in both phases: no hole in the curves
        assert {"entropy", "kl"} <= set(h) and not any(k.startswith("prerl/entropy") for k in h)
    # log P(y) is logged on the pre-train steps with rollouts in the loss, and only there (0 would read as certainty)
    assert [("prerl/marginal_logp" in h) for h in logs[:2]] == [h["prerl/kept_frac"] > 0 for h in logs[:2]]
    assert any("prerl/marginal_logp" in h for h in logs[:2])


def test_a_resumed_run_never_goes_back_from_grpo(tiny_model_dir, tmp_path):
    def config(switch, steps):
        return DSRLConfig(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_generations=4,
            max_completion_length=8, max_steps=steps, dsrl_switch_step=switch, learning_rate=1e-3, logging_steps=1,
            report_to="none", bf16=False, use_cpu=True, save_strategy="steps", save_steps=3, seed=3, disable_tqdm=True,
        )

    first = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=config(2, 3), train_dataset=toy_dataset())
    first.train()
    resumed = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=config(10, 5), train_dataset=toy_dataset())
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    trace = [h["prerl/active"] for h in resumed.state.log_history if "prerl/active" in h]
    assert trace[-2:] == [0.0, 0.0]


def test_a_run_too_short_to_switch_warns_at_train_start(tiny_model_dir, tmp_path):
    args = DSRLConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_generations=4, max_completion_length=8,
        max_steps=1, dsrl_switch_step=20, logging_steps=1, report_to="none", bf16=False, use_cpu=True,
        save_strategy="no", disable_tqdm=True,
    )
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset())
    with pytest.warns(UserWarning, match="1 optimizer steps.*dsrl_switch_step=20.*never"):
        trainer.train()
