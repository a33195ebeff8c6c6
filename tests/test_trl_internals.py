"""Each reach into TRL's internals (listed in prerl_trl/trainer/trl_internals.py) checked against the pinned TRL, and
the defects found at those seams, each with a test that failed before its fix."""

from __future__ import annotations

import collections

import pytest
import torch
from test_trainer import generate_batch, generation_rows, make_trainer

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer


# (a) joint mode scales TRL's entropy_coef for the length of the conditional loss; the adaptive controller's update
# inside that call was lost on restore.
def test_adaptive_entropy_with_a_joint_coefficient_other_than_0_or_1_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="use_adaptive_entropy.*rl_loss_coef"):
        make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, use_adaptive_entropy=True, rl_loss_coef=0.5)


def test_adaptive_entropy_update_survives_the_conditional_loss_at_coefficient_1(tiny_model_dir, tmp_path):
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, use_adaptive_entropy=True,
                           rl_loss_coef=1.0, dsrl_switch_step=5, entropy_coef=0.01, entropy_coef_delta=0.002,
                           entropy_target=100.0, prerl_sample_filter="all")
    inputs = generate_batch(trainer, generation_rows(trainer))
    trainer._compute_loss(trainer.model, inputs)
    # The window's entropy (a few nats) is below the target: TRL's controller raises the coefficient by one delta.
    assert trainer.entropy_coef == pytest.approx(0.012)


# (b) pre-train-space scoring drops the multimodal keywords; any other keyword must not vanish without a word.
def test_pretrain_scoring_refuses_an_unknown_keyword(tiny_model_dir, tmp_path):
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path)
    ids = torch.tensor([[5, 6, 7]])
    with trainer._marginal_scoring(), pytest.raises(TypeError, match="a_future_keyword"):
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 2,
                                                   a_future_keyword=None)
    with trainer._marginal_scoring(), pytest.raises(ValueError, match="multimodal"):
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 2,
                                                   pixel_values=torch.zeros(1, 3))


# (c) the completions table shows the advantages the loss used; TRL's log of its own must be where the adapter expects.
def test_logged_advantages_adapter_fails_loudly_when_trl_did_not_log_them(tiny_model_dir, tmp_path):
    from prerl_trl.trainer.trl_internals import replace_logged_advantages

    logs = {"advantages": collections.deque([0.5, -0.5], maxlen=8)}
    with pytest.raises(RuntimeError, match="advantages"):
        replace_logged_advantages(logs, trl_advantages=torch.tensor([1.0, 2.0, 3.0]), used=torch.tensor([0.0] * 3))
    with pytest.raises(RuntimeError, match="advantages"):  # the right count, other values: not TRL's log
        replace_logged_advantages(logs, trl_advantages=torch.tensor([1.0, 2.0]), used=torch.tensor([0.0] * 2))
