"""Tool-calling rollouts: TRL appends each tool's result to the completion with `tool_mask` 0. The pre-train-space loss
must leave those tokens out (numerator and denominator), and DSRL at switch step 0 must still be GRPO bit for bit.

The tiny random model cannot call a tool by itself, so `generate` is replaced by a deterministic stand-in that writes
a tool call (or an answer) in the Qwen2.5 format TRL parses, as TRL's own tool tests do.
"""

from __future__ import annotations

import re
import warnings
from unittest.mock import patch

import pytest
import torch
from test_dropin import run
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.chat_template_utils import qwen2_5_chat_template

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer
from prerl_trl.tiny import build_tiny_tokenizer, toy_dataset, toy_messages

TOOL_RESPONSE = re.compile(r"<tool_response>\n(\d+)\n</tool_response>")
QUESTION = re.compile(r"user\n(\d)\+(\d)=")
CALLS: list[tuple[int, int]] = []  # every call of a tool, standalone or an environment's


def add(a: int, b: int) -> int:
    """
    Adds two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The sum.
    """
    CALLS.append((a, b))
    return a + b


class AddEnvironment:
    """An `environment_factory` environment whose one tool is `add`."""

    def reset(self, **kwargs) -> None:
        pass

    def add(self, a: int, b: int) -> int:
        return add(a, b)


AddEnvironment.add.__doc__ = add.__doc__  # the tool's description, rendered into the prompt


def tool_call(a: int, b: int) -> str:
    return f'<tool_call>\n{{"name": "add", "arguments": {{"a": {a}, "b": {b}}}}}\n</tool_call><|im_end|>'


def first_turn(row: int, a: int, b: int) -> str:
    """What the stand-in model writes first, by the rollout's place in its group of 4: two tool calls, an answer that
    is right when a+b is even, and a wrong answer."""
    return [tool_call(a, b), tool_call(a, b), f"\\boxed{{{a + b if (a + b) % 2 == 0 else 9}}}<|im_end|>",
            "The answer is \\boxed{9}<|im_end|>"][row % 4]


def after_tool(row: int, result: str) -> str:
    """What it writes after a tool result: the result (right), or a wrong answer."""
    return f"\\boxed{{{result}}}<|im_end|>" if row % 2 == 0 else "Wait, \\boxed{9}<|im_end|>"


def make_fake_generate(tokenizer):
    """A stand-in for `generate`: reads the question (or the tool's result) from each row and writes `first_turn`
    (or `after_tool`)."""

    def fake_generate(self, input_ids, attention_mask=None, **kwargs):
        texts = []
        for row, ids in enumerate(input_ids):
            prompt = tokenizer.decode(ids[attention_mask[row].bool()] if attention_mask is not None else ids)
            results = TOOL_RESPONSE.findall(prompt)
            assert results or "<tool_response>" not in prompt, "a tool call failed"
            a, b = map(int, QUESTION.search(prompt).groups())
            texts.append(after_tool(row, results[-1]) if results else first_turn(row, a, b))
        new = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        width = max(len(ids) for ids in new)
        padded = [ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in new]
        return torch.cat([input_ids, torch.tensor(padded, device=input_ids.device)], dim=1)

    return fake_generate


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory) -> str:
    """A tiny random Qwen2 model with the tiny tokenizer and TRL's Qwen2.5 chat template (one TRL parses tool calls
    from)."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = qwen2_5_chat_template
    # The description of the tools (~600 tokens of this tokenizer) as one token: short prompts, fast tests.
    rendered = tokenizer.apply_chat_template(toy_messages("1+2="), tools=[add], tokenize=False)
    tokenizer.add_tokens([rendered[rendered.index("\n\n# Tools"): rendered.index("<|im_end|>")]])
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    directory = tmp_path_factory.mktemp("tool_model")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def answer_of(text: str, answer: str) -> float:
    """1.0 when the last `\\boxed{...}` of `text` is `answer` (the reward, computed again by hand)."""
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return 1.0 if found and found[-1] == answer else 0.0


def hand_written_gradients(model_dir: str, batch: dict, sample_filter: str, coef: float):
    """The gradient of the pre-train-space loss of one batch, from the rollouts' tokens alone: each row is classified
    by its text, its model-written tokens (the first turn and the one after the tool's result) get mask 1, its reward and group
    are recomputed, and the token-mean REINFORCE loss -coef sum A log P(y_t | <|im_start|>, y_<t) / #kept tokens is
    backpropagated through a fresh copy of the model, one unpadded row at a time. Returns the gradients and each
    row's model-token mask."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = Qwen2ForCausalLM.from_pretrained(model_dir)
    context = tokenizer.convert_tokens_to_ids("<|im_start|>")
    rows = []
    for prompt_ids, prompt_mask, ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                                                  batch["completion_mask"], strict=True):
        ids = ids[mask.bool()].tolist()
        prompt = tokenizer.decode(prompt_ids[prompt_mask.bool()])
        a, b = map(int, QUESTION.search(prompt).groups())
        text = tokenizer.decode(ids)
        model_tokens = torch.ones(len(ids))
        if "<tool_response>" in text:  # the model wrote the first turn and the one after the tool's result
            first = ids.index(tokenizer.eos_token_id) + 1
            last = tokenizer(text.split("<|im_start|>assistant\n")[-1], add_special_tokens=False)["input_ids"]
            assert ids[-len(last):] == last
            model_tokens[first: len(ids) - len(last)] = 0
        rows.append({"group": prompt, "ids": ids, "model_tokens": model_tokens,
                     "reward": answer_of(text, str(a + b)), "tool": "<tool_response>" in text})
    assert any(r["tool"] and r["model_tokens"].sum() < len(r["ids"]) for r in rows), "no tool result in the batch"
    for r in rows:
        group = [s["reward"] for s in rows if s["group"] == r["group"]]
        assert len(group) == 4
        r["advantage"] = r["reward"] - sum(group) / len(group)
    kept = [r for r in rows if {"all": True, "negative": r["advantage"] < 0, "positive": r["advantage"] > 0}[sample_filter]]
    assert any(r["tool"] for r in kept), "no tool-calling rollout among the kept ones"
    total = sum(r["model_tokens"].sum() for r in kept)
    loss = 0.0
    for r in kept:
        logits = model(torch.tensor([[context] + r["ids"]])).logits[0, :-1].float()
        logps = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(r["ids"])[:, None])[:, 0]
        loss = loss - coef * r["advantage"] * (logps * r["model_tokens"]).sum() / total
    loss.backward()
    return [p.grad for p in model.parameters()], [r["model_tokens"] for r in rows]


def tool_config(config_cls, tmp_path, **options):
    values = dict(
        output_dir=str(tmp_path / config_cls.__name__), per_device_train_batch_size=8, num_generations=4,
        max_completion_length=192, learning_rate=1e-3, logging_steps=1, report_to="none", bf16=False, use_cpu=True,
        save_strategy="no", seed=5, disable_tqdm=True, max_steps=1,
    )
    values.update(options)
    return config_cls(**values)


@pytest.mark.parametrize("sample_filter", ["negative", "positive", "all"])
def test_pretrain_space_loss_leaves_tool_results_out(tool_model_dir, tmp_path, sample_filter):
    """NSR-PreRL, PSR-PreRL and PreRL-all with tool calls: the gradient of one step equals the hand-written loss's, over the
    model's tokens only; TRL's `tool_mask` is 0 exactly on the tool results."""
    from conftest import boxed_reward

    tokenizer = AutoTokenizer.from_pretrained(tool_model_dir)
    args = tool_config(PreRLConfig, tmp_path, prerl_sample_filter=sample_filter, prerl_loss_coef=0.01,
                       max_grad_norm=0.0)
    trainer = PreRLTrainer(tool_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset(),
                           tools=[add])
    batches, grads = [], []
    compute_loss = trainer._compute_loss

    def recording_compute_loss(model, inputs):
        batches.append({k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        return compute_loss(model, inputs)

    class GradientRecorder(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            grads.append([p.grad.detach().clone() for p in trainer.model.parameters()])

    trainer.add_callback(GradientRecorder())
    with (patch.object(Qwen2ForCausalLM, "generate", make_fake_generate(tokenizer)),
          patch.object(trainer, "_compute_loss", recording_compute_loss), warnings.catch_warnings()):
        warnings.simplefilter("ignore")
        trainer.train()
    assert len(batches) == 1 and len(grads) == 1
    batch = batches[0]
    assert trainer.state.log_history[0]["tools/call_frequency"] == pytest.approx(0.5)
    assert batch["prompt_ids"].size(1) < 100  # the tools' description is one token: short prompts, fast tests
    expected, model_tokens = hand_written_gradients(tool_model_dir, batch, sample_filter, coef=0.01)
    # TRL's own tool_mask is 0 exactly on the tool results (what the stand-in model did not write).
    for row, mask in enumerate(model_tokens):
        assert batch["tool_mask"][row, : len(mask)].tolist() == mask.tolist()
    for got, want in zip(grads[0], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("kind", ["tools", "environment_factory"])
def test_dsrl_at_switch_step_zero_is_grpo_with_tools(tool_model_dir, tmp_path, monkeypatch, kind):
    """DSRL at switch step 0 with tool-calling rollouts is GRPOTrainer with the same tools, bit for bit."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    options = {"max_completion_length": 192, "per_device_train_batch_size": 8}
    options.update({"tools": [add]} if kind == "tools" else {"environment_factory": AddEnvironment})
    fake_generate = make_fake_generate(AutoTokenizer.from_pretrained(tool_model_dir))
    CALLS.clear()
    with patch.object(Qwen2ForCausalLM, "generate", fake_generate):
        grpo_params, grpo_losses, grpo_keys = run(GRPOTrainer, GRPOConfig, tool_model_dir, tmp_path, options)
        dsrl_params, dsrl_losses, dsrl_keys = run(DSRLTrainer, DSRLConfig, tool_model_dir, tmp_path, options)
    assert len(grpo_losses) == 2 and all("tools/call_frequency" in keys for keys in grpo_keys)
    assert len(CALLS) == 2 * 2 * 4, "2 runs x 2 steps x 4 tool calls (2 per group of 4 rollouts)"
    assert dsrl_losses == grpo_losses
    assert all(torch.equal(a, b) for a, b in zip(grpo_params, dsrl_params, strict=True))
    initial = Qwen2ForCausalLM.from_pretrained(tool_model_dir).parameters()
    assert not all(torch.equal(a, b) for a, b in zip(grpo_params, initial, strict=True)), "the runs did not train"
