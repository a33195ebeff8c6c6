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


# ----------------------------------------------------------------------------------------------------------------------
# The table of reaches in trl_internals.py, row by row, against the installed TRL
def _table_rows(kind: str) -> list[str]:
    from prerl_trl.trainer import trl_internals

    rows = [line.split("|")[1:3] for line in trl_internals.__doc__.splitlines() if line.startswith("| ")]
    names = [name.strip() for k, name in rows if k.strip() == kind]
    assert names, kind
    return names


@pytest.fixture(scope="module")
def grpo_trainer(tiny_model_dir, tmp_path_factory):
    from trl import GRPOConfig, GRPOTrainer

    from prerl_trl.tiny import toy_dataset

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=4, report_to="none", use_cpu=True, bf16=False)
    return GRPOTrainer(tiny_model_dir, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                       train_dataset=toy_dataset())


@pytest.mark.parametrize("name", _table_rows("method"))
def test_trl_method_exists(name):
    from trl import GRPOTrainer

    assert callable(getattr(GRPOTrainer, name, None)), name


@pytest.mark.parametrize("name", _table_rows("attribute"))
def test_trl_attribute_is_set_on_a_grpo_trainer(grpo_trainer, name):
    assert hasattr(grpo_trainer, name), name


@pytest.mark.parametrize("name", _table_rows("function"))
def test_trl_function_exists(name):
    import importlib

    module, *attrs = name.split(".")
    obj = importlib.import_module(module)
    for attr in attrs:
        obj = getattr(obj, attr, None) or importlib.import_module(f"{obj.__name__}.{attr}")
    assert callable(obj), name


@pytest.mark.parametrize("name", _table_rows("batch key"))
def test_trl_batch_key_is_written_or_read_by_grpo(name):
    import inspect

    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer)
    assert f'"{name}"' in source, name


def test_scoring_keywords_are_exactly_trls():
    import inspect

    from trl import GRPOTrainer

    from prerl_trl.trainer.trl_internals import MULTIMODAL_KEYWORDS, TEXT_KEYWORDS

    params = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)
    assert params[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    assert sorted(params[5:]) == sorted(TEXT_KEYWORDS + MULTIMODAL_KEYWORDS)


def test_trl_logs_this_batchs_advantages_last(tiny_model_dir, tmp_path):
    """The adapter's assumption, on TRL itself: after a generation batch, `_logs["advantages"]` ends with the
    batch's advantages. PreRL's own batch then shows the pre-train-space ones (r - group mean, NSR filter aside)."""
    trainer = make_trainer(PreRLTrainer, PreRLConfig, tiny_model_dir, tmp_path)
    inputs = generate_batch(trainer, generation_rows(trainer))
    logged = list(trainer._logs["advantages"])[-len(inputs["prerl_advantages"]):]
    assert logged == inputs["prerl_advantages"].tolist()


def test_trl_logged_advantages_tail_matches_its_batch(grpo_trainer):
    from prerl_trl.tiny import toy_dataset

    dataset = toy_dataset()
    rows = [dataset[p] for p in range(1) for _ in range(4)]
    grpo_trainer.model.train()
    output = grpo_trainer._generate_and_score_completions(rows)
    assert list(grpo_trainer._logs["advantages"])[-4:] == output["advantages"].tolist()


def test_logged_advantages_adapter_with_a_log_shorter_than_the_batch():
    """TRL's deque holds one training generation batch; an eval batch can be larger: the last entries are compared."""
    from prerl_trl.trainer.trl_internals import replace_logged_advantages

    logs = {"advantages": collections.deque([2.0, 3.0], maxlen=2)}
    replace_logged_advantages(logs, trl_advantages=torch.tensor([1.0, 2.0, 3.0]), used=torch.tensor([4.0, 5.0, 6.0]))
    assert list(logs["advantages"]) == [5.0, 6.0]


# ----------------------------------------------------------------------------------------------------------------------
# Package structure: what trainer/ exports, the card's step count beside the skip callback, the behaviors import
def test_trainer_package_exports_public_names_only():
    import importlib.util

    import prerl_trl.trainer as package

    assert set(package.__all__) == {"DSRLTrainer", "PreRLTrainer", "DSRL_STATE_FILE", "MetricThreshold",
                                    "StepCriterion", "SwitchCriterion", "quiet_checkpointing_deprecations"}
    assert importlib.util.find_spec("prerl_trl.trainer.hooks") is None  # utilities live in trainer/utils.py


def test_skip_update_callback_does_not_count_steps_for_the_card():
    import types

    from prerl_trl.trainer import optimizer_step

    trainer = types.SimpleNamespace(_steps_run={"pre-train space": 0, "GRPO": 0}, skipped=0)
    trainer._step_window = types.SimpleNamespace(pretrain=False, without_reward=True)
    trainer._skip_update_without_reward = lambda: setattr(trainer, "skipped", trainer.skipped + 1)
    optimizer_step._SkipUpdateWithoutReward(trainer).on_pre_optimizer_step(None, None, None)
    assert trainer.skipped == 1 and trainer._steps_run == {"pre-train space": 0, "GRPO": 0}
    optimizer_step._CountStepsForCard(trainer).on_pre_optimizer_step(None, None, None)
    assert trainer._steps_run == {"pre-train space": 0, "GRPO": 1}


def test_a_missing_behaviors_module_is_an_error_not_silence():
    import subprocess
    import sys

    code = "import sys; sys.modules['prerl_trl.behaviors'] = None; import prerl_trl.trainer.prerl"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "prerl_trl.behaviors" in result.stderr
