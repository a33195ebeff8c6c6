"""PreRLTrainer / DSRLTrainer against hand-written losses, on the CPU, offline.

The reference losses below are written independently of prerl_trl: they score each rollout one at a time, unpadded,
with a plain forward pass, and use rewards recomputed from the decoded text. With one update per batch the PPO ratio is
1, so the comparison is on *gradients*, never on loss values.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import boxed_reward
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer
from prerl_trl.tiny import toy_dataset

NUM_GENERATIONS = 8
NUM_PROMPTS = 4


def make_config(cls, tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=NUM_GENERATIONS * NUM_PROMPTS,
        num_generations=NUM_GENERATIONS,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        seed=7,
    )
    values.update(overrides)
    return cls(**values)


def make_trainer(trainer_cls, config_cls, model_dir, tmp_path, reward=boxed_reward, dataset=None, **overrides):
    args = make_config(config_cls, tmp_path, **overrides)
    trainer = trainer_cls(model_dir, reward_funcs=reward, args=args, train_dataset=dataset or toy_dataset())
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def generation_rows(trainer, start=0):
    """The rows of one generation batch as TRL's sampler lays them out: each prompt repeated num_generations times."""
    dataset = trainer.train_dataset
    return [dataset[start + p] for p in range(NUM_PROMPTS) for _ in range(NUM_GENERATIONS)]


def generate_batch(trainer, rows):
    torch.manual_seed(123)
    trainer.model.train()
    return trainer._generate_and_score_completions(rows)


def trainer_grads(trainer, inputs):
    """The gradients of one loss + backward, as a training step takes them (joint mode backpropagates its pre-train-space
    loss inside `compute_loss`, so gradients are read from `.grad` after the backward of the returned loss)."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(trainer.model, inputs)
    assert torch.isfinite(loss)
    if loss.requires_grad:
        loss.backward()
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    trainer.model.zero_grad(set_to_none=True)
    return grads, params


# ----------------------------------------------------------------------------------------------------------------------
# The independent reference
def rollout_tokens(inputs, i):
    prompt = inputs["prompt_ids"][i][inputs["prompt_mask"][i].bool()].tolist()
    completion = inputs["completion_ids"][i][inputs["completion_mask"][i].bool()].tolist()
    return prompt, completion


def sequence_token_logps(model, context: list[int], completion: list[int]) -> torch.Tensor:
    """log P(completion_t | context, completion_<t) for each t, from one unpadded forward pass."""
    ids = torch.tensor([context + completion])
    logits = model(input_ids=ids).logits[0].float()
    logps = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1)
    return logps[len(context) - 1 :]


def reference_rewards(tokenizer, inputs, rows) -> torch.Tensor:
    texts = [tokenizer.decode(rollout_tokens(inputs, i)[1], skip_special_tokens=True) for i in range(len(rows))]
    return torch.tensor(boxed_reward(texts, [row["answer"] for row in rows]))


def kept_rollouts(inputs, keep, space, context_id=None):
    """(row, context, completion) of the kept rollouts; the context is the prompt, or the context token alone."""
    for i in range(len(keep)):
        if keep[i]:
            prompt, completion = rollout_tokens(inputs, i)
            yield i, ([context_id] if space == "marginal" else prompt), completion


def reinforce_loss(model, inputs, advantages, keep, space, context_id=None):
    """Token-mean REINFORCE: -sum_{kept i, t} A_i log p(y_it) / (number of kept tokens)."""
    total, tokens = torch.zeros(()), 0
    for i, context, completion in kept_rollouts(inputs, keep, space, context_id):
        total = total - advantages[i] * sequence_token_logps(model, context, completion).sum()
        tokens += len(completion)
    return total / max(tokens, 1)


def mean_entropy(model, inputs, keep, space, context_id=None):
    """Mean per-token entropy of the next-token distribution over the kept rollouts' completion tokens."""
    total, tokens = torch.zeros(()), 0
    for _, context, completion in kept_rollouts(inputs, keep, space, context_id):
        logits = model(input_ids=torch.tensor([context + completion])).logits[0, len(context) - 1 : -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        total = total - (logp.exp() * logp).sum()
        tokens += len(completion)
    return total / max(tokens, 1)


def group_mean_advantages(rewards, scale=False):
    grouped = rewards.view(-1, NUM_GENERATIONS)
    adv = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (grouped.std(dim=1, keepdim=True) + 1e-4)
    return adv.view(-1)


def assert_grads_close(got, params, loss):
    expected = torch.autograd.grad(loss, params, allow_unused=True)
    for g, e in zip(got, expected, strict=True):
        g = torch.zeros(()) if g is None else g
        e = torch.zeros(()) if e is None else e
        torch.testing.assert_close(g, e.expand_as(g) if e.dim() == 0 else e, rtol=1e-4, atol=1e-6)


def im_start_id(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer, tokenizer.get_vocab()["<|im_start|>"]


# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample_filter", ["negative", "positive", "all"])
def test_gradient_matches_hand_written_prerl_loss(tiny_model_dir, tmp_path, sample_filter):
    trainer = make_trainer(
        PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_sample_filter=sample_filter, prerl_loss_coef=0.5,
        entropy_coef=0.05,
    )
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer, context_id = im_start_id(tiny_model_dir)
    rewards = reference_rewards(tokenizer, inputs, rows)
    advantages = group_mean_advantages(rewards)
    keep = {"negative": advantages < 0, "positive": advantages > 0, "all": torch.ones_like(advantages).bool()}
    keep = keep[sample_filter]
    assert 0 < int(keep.sum()) or sample_filter != "all"
    assert (advantages != 0).any(), "the fixture batch should mix right and wrong answers"

    torch.testing.assert_close(torch.tensor(list(trainer._logs["advantages"])[-len(rows):]), advantages)

    got, params = trainer_grads(trainer, inputs)
    expected_loss = 0.5 * reinforce_loss(trainer.model, inputs, advantages, keep, "marginal", context_id)
    expected_loss = expected_loss - 0.05 * mean_entropy(trainer.model, inputs, keep, "marginal", context_id)
    assert_grads_close(got, params, expected_loss)


def test_joint_mode_gradient(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_loss_coef=0.3, rl_loss_coef=2.0, entropy_coef=0.05
    )
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer, context_id = im_start_id(tiny_model_dir)
    rewards = reference_rewards(tokenizer, inputs, rows)
    pre_adv = group_mean_advantages(rewards)
    rl_adv = group_mean_advantages(rewards, scale=True)
    all_rows = torch.ones_like(rewards).bool()

    got, params = trainer_grads(trainer, inputs)
    expected = 0.3 * reinforce_loss(trainer.model, inputs, pre_adv, pre_adv < 0, "marginal", context_id)
    expected = expected + 2.0 * reinforce_loss(trainer.model, inputs, rl_adv, all_rows, "conditional")
    expected = expected - 0.05 * mean_entropy(trainer.model, inputs, all_rows, "conditional")  # once, unscaled
    assert_grads_close(got, params, expected)


def test_behaviour_metrics_are_logged_from_completions(tiny_model_dir, tmp_path):
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path)
    completions = [
        "Wait, let me check that again.",
        [{"role": "assistant", "content": "However, we could instead use algebra."}],
        "Nothing here: awaiting results.",
    ]
    trainer._log_behaviors("train", completions)
    metrics = trainer._metrics["train"]
    assert metrics["behaviors/reflection"][-1] == pytest.approx(2 / 3)  # "wait", "let me check"
    assert metrics["behaviors/transition"][-1] == pytest.approx(2 / 3)  # "however", "instead"


def test_prompt_invariance_before_switch_and_not_after(tiny_model_dir, tmp_path):
    def grads_with_and_without_prompt_swap(switch_step):
        trainer = make_trainer(
            DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, dsrl_switch_step=switch_step, prerl_sample_filter="all"
        )
        inputs = generate_batch(trainer, generation_rows(trainer))
        swapped = dict(inputs)
        generator = torch.Generator().manual_seed(0)
        swapped["prompt_ids"] = torch.randint(3, 200, inputs["prompt_ids"].shape, generator=generator)
        first, _ = trainer_grads(trainer, inputs)
        second, _ = trainer_grads(trainer, swapped)
        return [(a, b) for a, b in zip(first, second, strict=True) if a is not None]

    pretrain = grads_with_and_without_prompt_swap(switch_step=5)
    for a, b in pretrain:
        torch.testing.assert_close(a, b)
    after_switch = grads_with_and_without_prompt_swap(switch_step=0)
    assert any(not torch.allclose(a, b) for a, b in after_switch)


def test_dsrl_switch_trace_and_resume(tiny_model_dir, tmp_path):
    switch, steps, per_generation = 3, 6, 2
    overrides = dict(
        per_device_train_batch_size=8,
        num_generations=4,
        steps_per_generation=per_generation,
        max_steps=steps,
        dsrl_switch_step=switch,
        save_strategy="steps",
        save_steps=2,
    )
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **overrides)
    trainer.train()
    trace = [h["prerl/active"] for h in trainer.state.log_history if "prerl/active" in h]
    # A generation batch starts every `per_generation` steps and is scored in the phase of its first step.
    expected = [1.0 if (s // per_generation) * per_generation < switch else 0.0 for s in range(steps)]
    assert trace == expected
    assert all(h["loss"] == h["loss"] for h in trainer.state.log_history if "loss" in h)  # no NaN

    resumed = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    resumed_trace = [h["prerl/active"] for h in resumed.state.log_history if "prerl/active" in h]
    assert resumed_trace == expected


def test_reset_optimizer_at_switch_also_when_resumed_at_the_switch(tiny_model_dir, tmp_path):
    overrides = dict(
        max_steps=4, dsrl_switch_step=2, dsrl_reset_optimizer=True, prerl_sample_filter="all",
        save_strategy="steps", save_steps=2,
    )
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **overrides)
    trainer.train()
    steps = {int(state["step"]) for state in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {2}, "AdamW's step counter restarts at the switch (steps 2 and 3 only)"

    # checkpoint-2 was saved before the switch's first batch: resuming from it must still switch (and reset).
    resumed = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    steps = {int(state["step"]) for state in resumed.optimizer.state_dict()["state"].values()}
    assert steps == {2}
    # checkpoint-4 is after the switch: resuming from it must not reset again.
    again = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **{**overrides, "max_steps": 5})
    again.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    steps = {int(state["step"]) for state in again.optimizer.state_dict()["state"].values()}
    assert steps == {3}


def test_model_card_and_tags(tiny_model_dir, tmp_path):
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, max_steps=3, dsrl_switch_step=2,
                           per_device_train_batch_size=8, num_generations=4, prerl_loss_coef=0.05)
    trainer.train()
    trainer.save_model()
    card = (tmp_path / "out" / "README.md").read_text()
    for text in ("- prerl", "- dsrl", "- grpo", "- trl", "2604.14142", "2402.03300"):
        assert text in card
    # A local base model is named by its path, and the card records what this run did.
    assert "[None]" not in card and 'model="None"' not in card and str(tiny_model_dir) in card
    for text in ("DSRLTrainer", "2 in pre-train space, 1 in GRPO", "dsrl_switch_step=2", "`negative`",
                 "prerl_loss_coef=0.05", "`boxed_reward`"):
        assert text in card, text


# ----------------------------------------------------------------------------------------------------------------------
# Bad input fails at construction, naming the field
@pytest.mark.parametrize(
    ("field", "value"),
    [("prerl_sample_filter", "negatives"), ("rl_sample_filter", "wrong"), ("prerl_scale_rewards", "std"),
     ("dsrl_switch_step", -1)],
)
def test_bad_config_values(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        make_config(DSRLConfig, tmp_path, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("loss_type", "grpo"), ("loss_type", "bnpo"), ("use_adaptive_entropy", True),
     ("multi_objective_aggregation", "normalize_then_sum"), ("off_policy_mask_threshold", 0.5)],
)
def test_prerl_trainer_refuses_options_it_would_ignore_and_dsrl_accepts_them(tiny_model_dir, tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field}.*DSRLTrainer"):
        make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, **{field: value})
    make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **{field: value})


def test_context_token_outside_vocabulary(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="prerl_context_token"):
        make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_context_token="<|not_a_token|>")


def test_grpo_config_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(TypeError, match="PreRLConfig.*instead of GRPOConfig"):
        PreRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=make_config(GRPOConfig, tmp_path))
    with pytest.raises(TypeError, match="DSRLConfig.*got PreRLConfig.*instead of PreRLConfig"):
        DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=make_config(PreRLConfig, tmp_path))


@pytest.mark.parametrize(
    ("returned", "message"),
    [(lambda n: ["right"] * n, "short_reward.*str"), (lambda n: [0.0] * (n - 1), "short_reward"),
     (lambda n: None, "short_reward.*NoneType")],
)
def test_bad_reward_output_fails_at_its_first_call_naming_the_function(tiny_model_dir, tmp_path, returned, message):
    calls = []

    def short_reward(completions, **kwargs):
        calls.append(len(completions))
        return returned(len(completions))

    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, reward=short_reward)
    assert calls == []  # no call of its own at construction (a reward function may have side effects)
    with pytest.raises(ValueError, match=message):
        generate_batch(trainer, generation_rows(trainer))


def test_all_none_rewards_skip_the_update(tiny_model_dir, tmp_path):
    def no_reward(completions, **kwargs):
        return [None] * len(completions)

    for filter_name in ("negative", "all"):
        trainer = make_trainer(
            PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, reward=no_reward, prerl_sample_filter=filter_name,
            rl_loss_coef=1.0, entropy_coef=0.1,  # the entropy bonus would give a gradient if a row stayed in
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs = generate_batch(trainer, generation_rows(trainer))
        assert any("reward in this batch is None" in str(w.message) for w in caught)
        grads, _ = trainer_grads(trainer, inputs)
        assert all(g is None or (torch.isfinite(g).all() and g.abs().max() == 0) for g in grads)

    # In training the optimizer step is skipped: weight decay would otherwise move every weight.
    trainer = make_trainer(
        PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, reward=no_reward, max_steps=2, weight_decay=0.5
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert all(h["loss"] == 0.0 for h in trainer.state.log_history if "loss" in h)


@pytest.mark.parametrize("use_peft", [False, True])
def test_reference_model_is_scored_in_pretrain_space(tiny_model_dir, tmp_path, use_peft):
    from peft import LoraConfig

    beta = 0.2
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]) if use_peft else None
    args = make_config(
        PreRLConfig, tmp_path, beta=beta, prerl_sample_filter="all", prerl_loss_coef=1.0, prerl_kl_space="pretrain"
    )
    trainer = PreRLTrainer(
        tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset(), peft_config=peft_config
    )
    trainer.current_gradient_accumulation_steps = 1
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer, context_id = im_start_id(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # the untrained weights: the reference
    rewards = reference_rewards(tokenizer, inputs, rows)
    advantages = group_mean_advantages(rewards)

    total, tokens = torch.zeros(()), 0
    for i in range(len(rows)):
        prompt, completion = rollout_tokens(inputs, i)
        with torch.no_grad():
            ref_marginal = sequence_token_logps(reference, [context_id], completion)
            ref_conditional = sequence_token_logps(reference, prompt, completion)
        got = inputs["prerl_ref_per_token_logps"][i, : len(completion)]
        torch.testing.assert_close(got, ref_marginal, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got, ref_conditional, atol=1e-3)
        logps = sequence_token_logps(trainer.model, [context_id], completion)
        kl = torch.exp(ref_marginal - logps) - (ref_marginal - logps) - 1
        total = total + (-advantages[i] * logps + beta * kl).sum()
        tokens += len(completion)
    got_grads, params = trainer_grads(trainer, inputs)
    assert_grads_close(got_grads, params, total / tokens)


def test_multimodal_dataset_is_refused(tiny_model_dir, tmp_path):
    dataset = toy_dataset().add_column("image", [None] * len(toy_dataset()))
    with pytest.raises(ValueError, match="multimodal"):
        make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, dataset=dataset)


def test_default_kl_space_is_the_authors_no_kl_in_the_pre_train_phase(tiny_model_dir, tmp_path):
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, beta=0.2, prerl_sample_filter="all",
                           prerl_loss_coef=1.0)
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    assert "prerl_ref_per_token_logps" not in inputs and "ref_per_token_logps" not in inputs
    tokenizer, context_id = im_start_id(tiny_model_dir)
    advantages = group_mean_advantages(reference_rewards(tokenizer, inputs, rows))
    got, params = trainer_grads(trainer, inputs)
    keep = torch.ones_like(advantages).bool()
    assert_grads_close(got, params, reinforce_loss(trainer.model, inputs, advantages, keep, "marginal", context_id))


@pytest.mark.parametrize("space", ["marginal", "conditional"])
def test_selectable_advantage_estimators_against_hand_written_losses(tiny_model_dir, tmp_path, space):
    # Pre-train space: W-REINFORCE (+0.25 right, -1 wrong) on every rollout. Conditional (DSRL after a switch at 0): NSR
    # (-1 wrong, 0 right) under TRL's token-mean loss over all rollouts.
    if space == "marginal":
        trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_sample_filter="all",
                               prerl_loss_coef=1.0, prerl_advantage_estimator="w_reinforce",
                               w_reinforce_positive_weight=0.25)
    else:
        trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, dsrl_switch_step=0,
                               rl_advantage_estimator="nsr")
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer, context_id = im_start_id(tiny_model_dir)
    rewards = reference_rewards(tokenizer, inputs, rows)
    assert 0 < rewards.sum() < len(rewards)
    if space == "marginal":
        advantages = torch.where(rewards > 0.5, 0.25, -1.0)
    else:
        advantages = torch.where(rewards > 0.5, 0.0, -1.0)
    keep = torch.ones_like(rewards).bool()
    got, params = trainer_grads(trainer, inputs)
    expected = reinforce_loss(trainer.model, inputs, advantages, keep, space, context_id)
    assert_grads_close(got, params, expected)


def test_server_mode_without_a_server_fails_at_construction_naming_the_url(tiny_model_dir, tmp_path, monkeypatch):
    import socket

    import prerl_trl.vllm_server as vllm_server

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(vllm_server, "DEFAULT_WAIT_S", 1.0)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, use_vllm=True, vllm_mode="server",
                     vllm_server_host="127.0.0.1", vllm_server_port=port)
