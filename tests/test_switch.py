"""The DSRL switch seam (trainer/switch.py): a metric criterion decides the same after resume, on either side of the
switch, and on 2 processes that log different values. The default step rule is covered by test_dropin.py and the
resume tests of test_trainer.py."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from conftest import boxed_reward
from test_distributed import free_port
from test_trainer import make_config
from transformers import TrainerCallback

from prerl_trl import DSRLConfig, DSRLTrainer
from prerl_trl.tiny import toy_dataset
from prerl_trl.trainer import MetricThreshold, StepCriterion
from prerl_trl.trainer.switch import DSRLPhase


class _OneProcess:
    device = torch.device("cpu")

    @staticmethod
    def gather(tensor):
        return tensor


def fake_trainer(log_history, step=0):
    return types.SimpleNamespace(state=types.SimpleNamespace(log_history=log_history, global_step=step),
                                 accelerator=_OneProcess())


def test_metric_threshold_reads_the_latest_logged_value():
    above = MetricThreshold("reward", 0.5)
    assert not above.should_switch(fake_trainer([]))  # never logged: no switch
    assert not above.should_switch(fake_trainer([{"reward": 0.9}, {"loss": 1.0}, {"reward": 0.4}]))
    assert above.should_switch(fake_trainer([{"reward": 0.1}, {"reward": 0.5}]))
    below = MetricThreshold("entropy", 1.0, above=False)
    assert below.should_switch(fake_trainer([{"entropy": 0.7}]))
    assert not below.should_switch(fake_trainer([{"entropy": math.nan}]))


def test_phase_never_goes_back_and_keeps_its_state():
    phase = DSRLPhase(StepCriterion(2))
    assert phase.decide(fake_trainer([], step=1))
    assert not phase.decide(fake_trainer([], step=2))
    assert phase.mark_switched(2) is True
    assert not phase.decide(fake_trainer([], step=0))  # switched: GRPO whatever the criterion says
    resumed = DSRLPhase(StepCriterion(50))
    resumed.load_state_dict(json.loads(json.dumps(phase.state_dict())))
    assert not resumed.decide(fake_trainer([], step=3)) and resumed.switched_at == 2
    assert resumed.mark_switched(3) is False and resumed.switched_at == 2  # re-entry, not a second switch


class _Probe(TrainerCallback):
    """Logs `probe` = the optimizer step, at the end of each step."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._metrics["train"]["probe"].append(float(state.global_step))


def probed_trainer(tiny_model_dir, tmp_path, **overrides):
    args = make_config(DSRLConfig, tmp_path, per_device_train_batch_size=8, num_generations=4, max_steps=4,
                       dsrl_switch_step=100, save_strategy="steps", save_steps=1, **overrides)
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset(),
                          switch_criterion=MetricThreshold("probe", 2.0))
    trainer.add_callback(_Probe(trainer))
    return trainer


def active(trainer, after=0):
    return [h["prerl/active"] for h in trainer.state.log_history if "prerl/active" in h and h["step"] > after]


def test_metric_switch_and_resume_on_both_sides(tiny_model_dir, tmp_path):
    trainer = probed_trainer(tiny_model_dir, tmp_path)
    trainer.train()
    # probe is logged after each step: at step 2 it reads 2.0, so the batch of step 3 (index 2) is GRPO's.
    assert active(trainer) == [1.0, 1.0, 0.0, 0.0]
    state = json.loads((tmp_path / "out" / "checkpoint-3" / "dsrl_state.json").read_text())
    assert state["switched"] is True and state["switched_at"] == 2 and state["criterion"] == "probe >= 2.0"
    assert json.loads((tmp_path / "out" / "checkpoint-1" / "dsrl_state.json").read_text())["switched"] is False
    for step in (1, 3):  # before the switch, and after it
        resumed = probed_trainer(tiny_model_dir, tmp_path / f"resumed{step}")
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{step}"))
        assert active(resumed, after=step) == active(trainer, after=step), step
        assert resumed._dsrl_phase.switched_at == 2


@pytest.mark.slow
def test_two_ranks_logging_different_values_switch_together(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "scripts" / "dist_switch.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(script), "--out", str(tmp_path)]
    result = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"switch_rank{r}.json").read_text()) for r in (0, 1)]
    # Mean over ranks of step x (rank + 1) is 1.5 x step: >= 2.0 from step 2 (rank 1 alone: step 1).
    assert ranks[0] == ranks[1] == {"active": [1.0, 1.0, 0.0, 0.0], "switched_at": 2}
