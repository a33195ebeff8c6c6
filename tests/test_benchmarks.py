"""The GPU check's CPU dry-run, so that the script cannot rot between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    # ZeRO-3 is left out here: tests/test_distributed.py runs the same script (tests/scripts/dist_train.py) with two ranks.
    sections = "train_steps,loss_phase,grad_align,vllm"
    command = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path), "--sections", sections]
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(summary["sections"]) == set(sections.split(","))
    assert all(section["ok"] for section in summary["sections"].values())
    steps = summary["sections"]["train_steps"]
    assert steps["dsrl"]["active"] == [1.0, 0.0]  # two steps, the switch after the first
    assert all(steps[name]["max_weight_change"] > 0 for name in ("grpo", "nsr_prerl", "joint", "dsrl"))
    phase = json.loads((tmp_path / "loss_phase.json").read_text())["results"]
    assert phase["nsr_prerl"]["rows_in_loss"] < phase["grpo"]["rows_in_loss"]


def test_miniature_gpu_script_runs_a_preset(tmp_path):
    """benchmarks/miniature/gpu.sh (sweep, then the comparison) with the smoke preset on the CPU, writing under $OUT."""
    command = ["bash", str(ROOT / "benchmarks" / "miniature" / "gpu.sh"), "--preset", "smoke", "--cache-dir",
               str(tmp_path / "cache"), "--methods", "grpo", "nsr_prerl"]
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "OUT": str(tmp_path), "PRERL_NO_WHEELS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "miniature-gpu"
    sweep = json.loads((out / "sweep.json").read_text())
    results = json.loads((out / "results.json").read_text())
    # The sweep covered the methods given, and the comparison used the rate it chose (the shared rule: GRPO's).
    assert sweep["methods"] == ["grpo", "nsr_prerl"]
    assert set(results["runs"]) == {"grpo", "nsr_prerl"}
    assert set(results["learning_rates"].values()) == {sweep["chosen_per_method"]["grpo"]}
    assert "gpu preset:" in result.stdout
