"""Only what the loss uses is forwarded: filtered-out rows are dropped and padding columns trimmed, with the same loss
and gradients as the masked batch; passes that nothing reads are skipped."""

from __future__ import annotations

import pytest
import torch
from test_trainer import (
    NUM_GENERATIONS,
    generate_batch,
    generation_rows,
    group_mean_advantages,
    im_start_id,
    make_trainer,
    reference_rewards,
    rollout_tokens,
    sequence_token_logps,
    trainer_grads,
)

import prerl_trl.trainer.prerl as trainer_module
from prerl_trl import PreRLConfig, PreRLTrainer
from prerl_trl.compaction import compact_batch, even_chunks, kept_rows, pad_rows, scatter_rows


# ----------------------------------------------------------------------------------------------------------------------
# Pure helpers, against brute force
def test_kept_rows_and_width_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        mask = (torch.rand(6, 9, generator=generator) < 0.3).long()
        mask[torch.rand(6, generator=generator) < 0.4] = 0
        rows, width = kept_rows(mask)
        expected_rows = [i for i in range(6) if any(mask[i].tolist())]
        expected_width = max((j + 1 for i in expected_rows for j in range(9) if mask[i, j]), default=1)
        assert rows.tolist() == expected_rows and width == expected_width


def test_pad_rows_repeats_the_first_row_or_row_zero():
    assert pad_rows(torch.tensor([2, 5]), 4).tolist() == [2, 5, 2, 2]
    assert pad_rows(torch.tensor([2, 5]), 2).tolist() == [2, 5]
    assert pad_rows(torch.tensor([], dtype=torch.long), 1).tolist() == [0]


def test_compact_batch_slices_per_row_and_completion_columns_only():
    batch = {
        "prompt_ids": torch.arange(20).view(4, 5),  # 5 prompt columns: never trimmed
        "completion_ids": torch.arange(24).view(4, 6),
        "old_per_token_logps": torch.arange(24.0).view(4, 6),
        "importance_sampling_ratio": torch.arange(4.0).view(4, 1),
        "advantages": torch.tensor([0.1, 0.2, 0.3, 0.4]),
        "num_items_in_batch": torch.tensor(7.0),
    }
    out = compact_batch(batch, torch.tensor([1, 3]), 2)
    assert out["prompt_ids"].tolist() == [[5, 6, 7, 8, 9], [15, 16, 17, 18, 19]]
    assert out["completion_ids"].tolist() == [[6, 7], [18, 19]]
    assert out["old_per_token_logps"].tolist() == [[6.0, 7.0], [18.0, 19.0]]
    assert out["importance_sampling_ratio"].tolist() == [[1.0], [3.0]]
    assert out["advantages"].tolist() == pytest.approx([0.2, 0.4])
    assert out["num_items_in_batch"].item() == 7.0


def test_scatter_rows_inverts_compaction_and_even_chunks_cover_the_rows():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    full = scatter_rows(values, torch.tensor([0, 2]), (3, 4))
    assert full.tolist() == [[1, 2, 0, 0], [0, 0, 0, 0], [3, 4, 0, 0]]
    for rows in range(0, 9):
        for chunks in range(1, 5):
            bounds = even_chunks(rows, chunks)
            assert len(bounds) == chunks
            assert [i for s, e in bounds for i in range(s, e)] == list(range(rows))
            sizes = [e - s for s, e in bounds]
            assert max(sizes) - min(sizes) <= 1


# ----------------------------------------------------------------------------------------------------------------------
# The trainer: compacted against masked
def no_compaction(loss_mask):
    """The masked version: every row, every column."""
    return torch.arange(loss_mask.size(0)), loss_mask.size(1)


class ForwardShapes:
    """Records the (rows, columns) of every scoring forward pass of a model (those given labels: not generation's)."""

    def __init__(self, model):
        self.shapes: list[tuple[int, int]] = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        if "labels" in kwargs:
            self.shapes.append(tuple(kwargs["input_ids"].shape))

    def close(self):
        self.handle.remove()


@pytest.mark.parametrize("overrides", [{}, {"rl_loss_coef": 1.0, "rl_sample_filter": "negative"}])
def test_compacted_loss_and_gradients_equal_the_masked_ones(tiny_model_dir, tmp_path, monkeypatch, overrides):
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, entropy_coef=0.05, **overrides)
    inputs = generate_batch(trainer, generation_rows(trainer))
    loss_mask = inputs["prerl_loss_mask"]
    kept = (loss_mask.sum(1) > 0).tolist()
    assert any(kept) and not all(kept)
    assert kept != sorted(kept, reverse=True), "kept rows should be interleaved with dropped ones"

    shapes = ForwardShapes(trainer.model)
    compact_loss = trainer.compute_loss(trainer.model, inputs)
    shapes.close()
    compact_grads, _ = trainer_grads(trainer, inputs)
    monkeypatch.setattr(trainer_module, "kept_rows", no_compaction)
    masked_loss = trainer.compute_loss(trainer.model, inputs)
    masked_grads, _ = trainer_grads(trainer, inputs)

    torch.testing.assert_close(compact_loss, masked_loss, rtol=1e-5, atol=1e-7)
    for a, b in zip(compact_grads, masked_grads, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    # The pre-train-space forward saw only the kept rows, trimmed after their last kept token, plus the context token.
    rows, width = kept_rows(loss_mask)
    assert shapes.shapes[0] == (rows.numel(), width + 1)
    if overrides:  # the conditional forward of NSR-RL sees only the rollouts with a negative conditional advantage
        conditional_rows = int((inputs["advantages"] < 0).sum())
        assert shapes.shapes[1][0] == conditional_rows < len(kept)


def test_a_batch_without_kept_rows_still_runs_one_zero_weight_row(tiny_model_dir, tmp_path):
    def always_right(completions, **kwargs):
        return [1.0] * len(completions)

    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, reward=always_right)
    inputs = generate_batch(trainer, generation_rows(trainer))
    assert inputs["prerl_loss_mask"].sum() == 0
    shapes = ForwardShapes(trainer.model)
    grads, _ = trainer_grads(trainer, inputs)
    shapes.close()
    assert shapes.shapes == [(1, 2)]  # one row: the context token and one completion token
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_old_policy_pass_scores_only_kept_rows_and_skips_the_conditional_pass(tiny_model_dir, tmp_path):
    # num_iterations=2: the policy moves between generation and the second use of a batch, so old log-probs are needed.
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path, num_iterations=2)
    rows = generation_rows(trainer)
    shapes = ForwardShapes(trainer.model)
    inputs = generate_batch(trainer, rows)
    shapes.close()
    assert "old_per_token_logps" not in inputs  # the conditional one: nothing reads it in pre-train space
    loss_mask = inputs["prerl_loss_mask"]
    kept, width = kept_rows(loss_mask)
    assert shapes.shapes == [(kept.numel(), width + 1)]  # one scoring pass: the kept rows, in pre-train space

    tokenizer, context_id = im_start_id(tiny_model_dir)
    advantages = group_mean_advantages(reference_rewards(tokenizer, inputs, rows))
    old = inputs["prerl_old_per_token_logps"]
    for i in range(len(rows)):
        _, completion = rollout_tokens(inputs, i)
        if advantages[i] < 0 and completion:
            with torch.no_grad():
                expected = sequence_token_logps(trainer.model, [context_id], completion)
            torch.testing.assert_close(old[i, : len(completion)], expected, rtol=1e-4, atol=1e-5)
        else:
            assert torch.count_nonzero(old[i]) == 0
    assert len(rows) % NUM_GENERATIONS == 0
