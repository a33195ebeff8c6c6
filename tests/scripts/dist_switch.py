"""DSRL with a metric switch criterion in 2 CPU processes (gloo): the ranks log different values, and must agree.

Run by tests/test_switch.py:  torchrun --nproc_per_node 2 tests/scripts/dist_switch.py --out DIR

Each rank logs `probe` = global_step x (rank + 1) at the end of each step. The criterion switches when the mean over
ranks reaches 2.0: at step 2 (mean 3.0). Rank 1 alone would switch at step 1, rank 0 alone at step 2. Each rank writes
its `prerl/active` trace to DIR/switch_rank{r}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch.distributed as dist  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


class Probe(TrainerCallback):
    def __init__(self, trainer, rank: int) -> None:
        self.trainer, self.rank = trainer, rank

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._metrics["train"]["probe"].append(float(state.global_step * (self.rank + 1)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    from prerl_trl import DSRLConfig, DSRLTrainer
    from prerl_trl.tiny import build_tiny_model, toy_dataset
    from prerl_trl.trainer import MetricThreshold

    model_dir = os.path.join(cli.out, "model")
    if rank == 0:
        build_tiny_model(model_dir, warmup_steps=50)
    dist.barrier()
    args = DSRLConfig(
        output_dir=os.path.join(cli.out, "run"), per_device_train_batch_size=4, num_generations=4,
        max_completion_length=4, max_steps=4, dsrl_switch_step=100, learning_rate=1e-3, logging_steps=1,
        report_to="none", bf16=False, use_cpu=True, save_strategy="no", ddp_backend="gloo", seed=3,
    )
    trainer = DSRLTrainer(model_dir, reward_funcs=lambda completion_ids, **kw: [float(sum(i) % 2) for i in completion_ids],
                          args=args, train_dataset=toy_dataset(repeat=4),
                          switch_criterion=MetricThreshold("probe", 2.0))
    trainer.add_callback(Probe(trainer, rank))
    trainer.train()
    trace = [h["prerl/active"] for h in trainer.state.log_history if "prerl/active" in h]
    with open(os.path.join(cli.out, f"switch_rank{rank}.json"), "w") as f:
        json.dump({"active": trace, "switched_at": trainer._dsrl_phase.switched_at}, f)
    dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
