"""Several processes (gloo DDP) and DeepSpeed ZeRO-3, on the CPU, through tests/scripts/dist_train.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "dist_train.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nproc: int, out: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
        str(SCRIPT), "--out", str(out), *extra,
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_nsr_prerl_with_a_rank_without_negatives(tmp_path):
    torchrun(2, tmp_path, "--steps", "3")
    rank0 = json.loads((tmp_path / "losses_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "losses_rank1.json").read_text())
    assert rank0["world"] == rank1["world"] == 2
    assert len(rank0["losses"]) == len(rank1["losses"]) == 3
    # Rank 0's rollouts are all right: no negative rollout, so its NSR loss is exactly 0 (and not NaN).
    assert rank0["losses"] == [0.0, 0.0, 0.0]
    assert any(loss != 0.0 for loss in rank1["losses"])
    assert rank0["active"] == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_deepspeed_zero3_two_ranks_across_the_dsrl_switch_with_a_rank_without_kept_rows(tmp_path):
    pytest.importorskip("deepspeed")
    torchrun(2, tmp_path, "--zero3", "--steps", "4", env={"DS_ACCELERATOR": "cpu"})
    rank0 = json.loads((tmp_path / "losses_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "losses_rank1.json").read_text())
    assert rank0["world"] == rank1["world"] == 2 and rank0["zero_stage"] == 3
    assert rank0["active"] == rank1["active"] == [1.0, 1.0, 0.0, 0.0]  # switch at step 2
    # Rank 0 keeps no rollout before the switch: it forwards one zero-weight row (and dummy reference passes) so that
    # ZeRO-3's parameter gathers line up with rank 1's, and its loss is exactly 0.
    assert rank0["losses"][:2] == [0.0, 0.0]
    assert any(loss != 0.0 for loss in rank1["losses"][:2])
    card = (tmp_path / "run" / "README.md").read_text()
    assert "dsrl" in card and (tmp_path / "run" / "model.safetensors").exists()
