"""Several processes (gloo DDP) and DeepSpeed ZeRO-3, on the CPU, through tests/scripts/dist_train.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

SCRIPT = Path(__file__).parent / "scripts" / "dist_train.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_same_parameters_on_both_ranks(out: Path, base: Path) -> dict[str, torch.Tensor]:
    """The ranks' full parameters after the run are identical, and training moved them away from the base model."""
    rank0 = torch.load(out / "params_rank0.pt")
    rank1 = torch.load(out / "params_rank1.pt")
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    initial = AutoModelForCausalLM.from_pretrained(base).state_dict()
    assert any(not torch.equal(rank0[name], initial[name]) for name in rank0)
    return rank0


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
    assert_same_parameters_on_both_ranks(tmp_path, base=tmp_path / "model")


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

    # Both ranks hold the same weights after the run, and save_model wrote exactly them as a plain transformers model.
    trained = assert_same_parameters_on_both_ranks(tmp_path, base=tmp_path / "model")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run").state_dict()
    for name, tensor in trained.items():
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0)

    # A ZeRO-3 checkpoint resumes on its side of the switch (dsrl_switch_step=2). The phase of a step is that of its
    # generation batch, decided at the optimizer step that generates it; with num_iterations=2 a batch serves two
    # steps, and a resumed run generates afresh at the step it resumes from. From checkpoint-1: a batch generated at
    # step 1 (NSR-PreRL) serves steps 2 and 3, then one generated at step 3 (GRPO). From checkpoint-3: GRPO.
    for rank in (0, 1):
        resumed = json.loads((tmp_path / f"resumed_rank{rank}.json").read_text())
        assert resumed == {"1": [1.0, 1.0, 0.0], "3": [0.0]}
    for step, switched in ((1, False), (3, True)):
        state = json.loads((tmp_path / "run" / f"checkpoint-{step}" / "dsrl_state.json").read_text())
        assert state["switched"] is switched
        assert any(path.name.startswith("global_step") for path in (tmp_path / "run" / f"checkpoint-{step}").iterdir())
