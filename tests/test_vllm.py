"""The vLLM paths, with a fake generation backend in place of TRL's `VLLMGeneration` (no GPU here).

Generation is unchanged, the weight sync is still called, and vLLM's importance-sampling correction compares the
sampler's log-probs with the trainer's *conditional* log-probs, also when the loss is taken in pre-train space.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_trainer import (
    NUM_GENERATIONS,
    assert_grads_close,
    generation_rows,
    im_start_id,
    make_config,
    rollout_tokens,
    sequence_token_logps,
    trainer_grads,
)

from prerl_trl import PreRLConfig, PreRLTrainer
from prerl_trl.tiny import toy_dataset

SAMPLER_LOGP = -1.5  # the log-prob the fake sampler reports for every token it "sampled"


class FakeVLLMGeneration:
    """Stands in for `trl.generation.vllm_generation.VLLMGeneration`: same constructor and methods used by GRPO."""

    def __init__(self, model, accelerator, processing_class, mode, **kwargs):
        self.mode = mode
        self.eos = processing_class.eos_token_id
        self.sync_calls = 0
        self.generate_calls = 0
        self.vllm_client = SimpleNamespace(
            get_server_info=lambda: {"model_config": {"logprobs_mode": "processed_logprobs"}}
        )

    def sync_weights(self):
        self.sync_calls += 1

    def generate(self, prompts, images, num_generations, profiler=None):
        self.generate_calls += 1
        generator = torch.Generator().manual_seed(1000 + self.generate_calls)
        completions = []
        for _ in prompts:
            length = int(torch.randint(2, 7, (1,), generator=generator))
            completions.append(torch.randint(10, 300, (length,), generator=generator).tolist() + [self.eos])
        logprobs = [[[SAMPLER_LOGP] for _ in ids] for ids in completions]
        return prompts, completions, logprobs, None


def parity_reward(completion_ids, **kwargs) -> list[float]:
    return [float(sum(ids) % 2) for ids in completion_ids]


@pytest.mark.parametrize("vllm_mode", ["colocate", "server"])
def test_vllm_generation_and_conditional_importance_sampling(tiny_model_dir, tmp_path, monkeypatch, vllm_mode):
    monkeypatch.setattr("trl.trainer.grpo_trainer.VLLMGeneration", FakeVLLMGeneration)
    # The stand-in replaces the server too: nothing answers its health check (tests/test_vllm_server.py covers that).
    monkeypatch.setattr("prerl_trl.trainer.prerl.check_vllm_server", lambda *args, **kwargs: None)
    args = make_config(
        PreRLConfig,
        tmp_path,
        use_vllm=True,
        vllm_mode=vllm_mode,
        vllm_importance_sampling_correction=True,
        vllm_importance_sampling_mode="token_truncate",
        vllm_importance_sampling_clip_max=1e6,
        prerl_sample_filter="negative",
    )
    trainer = PreRLTrainer(tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset())
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    rows = generation_rows(trainer)
    inputs = trainer._generate_and_score_completions(rows)
    backend = trainer.vllm_generation
    assert backend.generate_calls == 1 and backend.sync_calls == 1

    _, context_id = im_start_id(tiny_model_dir)
    model = trainer.model
    ratio = inputs["importance_sampling_ratio"]
    weights, rewards = [], []
    for i in range(len(rows)):
        prompt, completion = rollout_tokens(inputs, i)
        rewards.append(float(sum(completion) % 2))
        with torch.no_grad():
            conditional = sequence_token_logps(model, prompt, completion)
            marginal = sequence_token_logps(model, [context_id], completion)
        expected = torch.exp(conditional - SAMPLER_LOGP)
        torch.testing.assert_close(ratio[i, : len(completion)], expected, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(ratio[i, : len(completion)], torch.exp(marginal - SAMPLER_LOGP))
        weights.append(expected)

    rewards = torch.tensor(rewards).view(-1, NUM_GENERATIONS)
    advantages = (rewards - rewards.mean(dim=1, keepdim=True)).view(-1)
    assert (advantages < 0).any()
    total, tokens = torch.zeros(()), 0
    for i in range(len(rows)):
        if advantages[i] < 0:
            prompt, completion = rollout_tokens(inputs, i)
            logps = sequence_token_logps(model, [context_id], completion)
            total = total - advantages[i] * (weights[i] * logps).sum()
            tokens += len(completion)
    got, params = trainer_grads(trainer, inputs)
    assert_grads_close(got, params, args.prerl_loss_coef * total / tokens)
