"""The pre-train-space context (`prerl_context`) and the learning rate of pre-train-space steps
(`prerl_learning_rate_scale`), against hand computations on the tiny model."""

from __future__ import annotations

import pytest
import torch
from test_trainer import (
    assert_grads_close,
    generate_batch,
    generation_rows,
    group_mean_advantages,
    make_config,
    make_trainer,
    reference_rewards,
    sequence_token_logps,
    trainer_grads,
)
from transformers import AutoTokenizer, TrainerCallback

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer
from prerl_trl.pretrain_space import PretrainContext, build_marginal_inputs, frame_messages
from prerl_trl.tiny import TOY_SYSTEM_PROMPT, toy_dataset


# ----------------------------------------------------------------------------------------------------------------------
# Pure functions
def test_marginal_inputs_with_a_per_row_context_left_padded():
    completions = torch.tensor([[5, 6, 0], [7, 0, 0]])
    completion_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    context = torch.tensor([[9, 8, 3], [0, 0, 3]])
    context_mask = torch.tensor([[1, 1, 1], [0, 0, 1]])
    ids, mask = build_marginal_inputs(completions, completion_mask, context, context_mask)
    assert ids.tolist() == [[9, 8, 3, 5, 6, 0], [0, 0, 3, 7, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0]]
    # A single token id is the one-column context of every row.
    ids, mask = build_marginal_inputs(completions, completion_mask, 3)
    assert ids[:, 0].tolist() == [3, 3] and mask[:, 0].tolist() == [1, 1]
    with pytest.raises(ValueError, match="context must be"):
        build_marginal_inputs(completions, completion_mask, torch.tensor([3, 3]))


def test_frame_messages_drop_the_question_and_keep_what_was_asked():
    system = {"role": "system", "content": "S"}
    shot_q, shot_a = {"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}
    prompt = [system, shot_q, shot_a, {"role": "user", "content": "2+2"}]
    empty = {"role": "user", "content": ""}
    assert frame_messages(prompt) == [system, empty]
    assert frame_messages(prompt, history=True) == [system, shot_q, shot_a, empty]
    assert frame_messages([{"role": "user", "content": "2+2"}]) == [empty]
    with pytest.raises(ValueError, match="conversational prompts"):
        frame_messages("2+2")
    with pytest.raises(ValueError, match="last message must be the user's question"):
        frame_messages([system, shot_q, shot_a])


def test_context_batch_renders_each_frame_once_and_left_pads():
    calls = []

    def render(messages, tokenize):  # a stand-in template: one id per message, then a header id
        calls.append(tokenize)
        return [100 + len(m["content"]) for m in messages] + [1] if tokenize else "|".join(m["content"] for m in messages)

    context = PretrainContext("chat_frame_history", token_id=7, render=render)
    long = [{"role": "system", "content": "ab"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"},
            {"role": "user", "content": "what?"}]
    short = [{"role": "user", "content": "other"}]
    ids, mask = context.batch([long, long, short], pad_id=0)
    assert ids.tolist() == [[102, 102, 101, 100, 1], [102, 102, 101, 100, 1], [0, 0, 0, 100, 1]]
    assert mask.tolist() == [[1] * 5, [1] * 5, [0, 0, 0, 1, 1]]
    assert calls.count(True) == 2  # two distinct frames, each rendered once
    token = PretrainContext("token", token_id=7)
    assert token.batch(["plain text", long], pad_id=0)[0].tolist() == [[7], [7]]
    with pytest.raises(ValueError, match="holds the question"):
        context.ids([{"role": "system", "content": "Answer what? now"}, {"role": "user", "content": "what?"}])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("prerl_context", "frame", "prerl_context"), ("prerl_learning_rate_scale", -0.5, "prerl_learning_rate_scale"),
    ("prerl_learning_rate_scale", float("nan"), "prerl_learning_rate_scale"),
])
def test_bad_context_and_scale_values(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        make_config(DSRLConfig, tmp_path, **{field: value})


def test_conflicting_context_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="only used with prerl_context='token'"):
        make_config(PreRLConfig, tmp_path, prerl_context="chat_frame", prerl_context_token="<|im_start|>")
    with pytest.raises(ValueError, match="joint-mode step"):
        make_config(PreRLConfig, tmp_path, prerl_learning_rate_scale=0.5, rl_loss_coef=1.0)


def test_chat_frame_needs_conversational_prompts(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="conversational prompts"):
        make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_context="chat_frame",
                     dataset=toy_dataset(conversational=False))


# ----------------------------------------------------------------------------------------------------------------------
# The chat frame in the loss: gradient against a hand-written loss
def _frame_ids(tokenizer) -> list[int]:
    """The frame by hand: the tiny template's system turn, an empty user turn and the assistant header."""
    text = f"<|im_start|>system\n{TOY_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_chat_frame_gradient_matches_hand_written_loss(tiny_model_dir, tmp_path):
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_context="chat_frame",
                           prerl_loss_coef=0.5)
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = _frame_ids(tokenizer)
    assert inputs["prerl_context_ids"][0].tolist() == frame
    advantages = group_mean_advantages(reference_rewards(tokenizer, inputs, rows))
    assert (advantages != 0).any(), "the fixture batch should mix right and wrong answers"
    total, tokens = torch.zeros(()), 0
    for i in torch.nonzero(advantages < 0).flatten().tolist():
        completion = inputs["completion_ids"][i][inputs["completion_mask"][i].bool()].tolist()
        total, tokens = total - advantages[i] * sequence_token_logps(trainer.model, frame, completion).sum(), tokens + len(
            completion)
    got, params = trainer_grads(trainer, inputs)
    assert_grads_close(got, params, 0.5 * total / tokens)


def test_chat_frame_old_policy_logps_match_a_hand_computation(tiny_model_dir, tmp_path):
    # The policy moves between generation and loss here, so the old policy is scored (after the frame) at generation.
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, prerl_context="chat_frame",
                           gradient_accumulation_steps=2, steps_per_generation=4)
    rows = generation_rows(trainer)
    inputs = generate_batch(trainer, rows)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = _frame_ids(tokenizer)
    advantages = group_mean_advantages(reference_rewards(tokenizer, inputs, rows))
    old = inputs["prerl_old_per_token_logps"]
    for i in range(len(rows)):
        completion = inputs["completion_ids"][i][inputs["completion_mask"][i].bool()].tolist()
        if advantages[i] < 0:
            with torch.no_grad():
                expected = sequence_token_logps(trainer.model, frame, completion)
            torch.testing.assert_close(old[i, : len(completion)], expected, rtol=1e-4, atol=1e-5)
        else:  # rows outside the loss are not scored
            assert not old[i].any()


# ----------------------------------------------------------------------------------------------------------------------
# The learning rate of pre-train-space steps
class _Updates(TrainerCallback):
    """Per optimizer step: the learning rate applied and the weights' change."""

    def __init__(self):
        self.rates, self.updates, self._before = [], [], None

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.rates.append(optimizer.param_groups[0]["lr"])
        self._before = [p.detach().clone() for p in model.parameters()]

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.updates.append([p.detach() - b for p, b in zip(model.parameters(), self._before, strict=True)])


def _train(tiny_model_dir, tmp_path, name, resume=None, **overrides):
    updates = _Updates()
    values = dict(per_device_train_batch_size=8, num_generations=4, max_steps=4, dsrl_switch_step=2,
                  learning_rate=1e-3, lr_scheduler_type="constant", prerl_sample_filter="all",
                  output_dir=str(tmp_path / name))
    values.update(overrides)
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, **values)
    trainer.add_callback(updates)
    trainer.train(resume_from_checkpoint=resume)
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    return updates, logged


def test_learning_rate_scale_applies_to_pretrain_steps_only(tiny_model_dir, tmp_path):
    base, _ = _train(tiny_model_dir, tmp_path, "base")
    scaled, logged = _train(tiny_model_dir, tmp_path, "scaled", prerl_learning_rate_scale=0.25,
                            save_strategy="steps", save_steps=1)
    # The rate applied: 0.25 x 1e-3 in the two NSR-PreRL steps, 1e-3 after the switch; and that is what is logged.
    assert scaled.rates == pytest.approx([2.5e-4, 2.5e-4, 1e-3, 1e-3])
    assert base.rates == pytest.approx([1e-3] * 4)
    assert logged == pytest.approx(scaled.rates)
    # Same batch, same gradient: AdamW's first update (decoupled weight decay included) is linear in the rate. The
    # updates are differences of fp32 weights of size up to ~1 (norms), so they are exact to a few ulps of 1 (~1e-7).
    for b, s in zip(base.updates[0], scaled.updates[0], strict=True):
        assert b.abs().max() > 1e-4
        torch.testing.assert_close(s, 0.25 * b, rtol=1e-3, atol=3e-7)
    # Resumed before the switch, the scale still holds, and still stops at the switch.
    resumed, logged = _train(tiny_model_dir, tmp_path, "scaled", resume=str(tmp_path / "scaled" / "checkpoint-1"),
                             prerl_learning_rate_scale=0.25)
    assert resumed.rates == pytest.approx([2.5e-4, 1e-3, 1e-3])
    assert logged[-3:] == pytest.approx(resumed.rates)


def test_learning_rate_scale_leaves_grpo_untouched(tiny_model_dir, tmp_path):
    plain, _ = _train(tiny_model_dir, tmp_path, "plain", dsrl_switch_step=0, max_steps=2)
    scaled, _ = _train(tiny_model_dir, tmp_path, "scaled", dsrl_switch_step=0, max_steps=2,
                       prerl_learning_rate_scale=0.25)
    assert scaled.rates == plain.rates == pytest.approx([1e-3, 1e-3])
    for step_plain, step_scaled in zip(plain.updates, scaled.updates, strict=True):
        for a, b in zip(step_plain, step_scaled, strict=True):
            assert torch.equal(a, b)
