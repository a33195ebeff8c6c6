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
