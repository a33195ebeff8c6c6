"""A few steps of NSR-PreRL / DSRL in several CPU processes (gloo), or under DeepSpeed ZeRO-3 on the CPU.

Run by tests/test_distributed.py:
    torchrun --nproc_per_node 2 tests/scripts/dist_train.py --out DIR               # DDP, gloo
    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 tests/scripts/dist_train.py --out DIR --zero3
    torchrun --nproc_per_node 1 tests/scripts/dist_train.py --out DIR --zero3 --backend nccl     # on a GPU

With two processes, rank 0's rollouts are all right (reward 1: no negative rollout on that rank, so no row of it enters
the NSR loss) and rank 1's are mixed. Under ZeRO-3 a KL term (beta > 0) exercises the reference model, scored in
pre-train space and re-synced at the DSRL switch, and two iterations per batch exercise the old-policy pass. Each rank
writes the losses it saw to DIR/losses_rank{r}.json and its full parameters after the run (gathered from the ZeRO-3
partitions) to DIR/params_rank{r}.pt. Under ZeRO-3 the run saves a checkpoint every step; it is then resumed, in the same
processes, from the checkpoint before the switch and from the one after it, and each resumed run's `prerl/active` trace
goes to DIR/resumed_rank{r}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def rank_reward(completion_ids, **kwargs) -> list[float]:
    if dist.get_world_size() > 1 and dist.get_rank() == 0:
        return [1.0] * len(completion_ids)
    return [float(sum(ids) % 2) for ids in completion_ids]


def full_parameters(trainer) -> dict[str, torch.Tensor]:
    """Every parameter of the trained model, whole on this rank (gathered from the partitions under ZeRO-3)."""
    named = list(trainer.model.named_parameters())
    if trainer.is_deepspeed_enabled:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {name: p.detach().clone() for name, p in named}
    return {name: p.detach().clone() for name, p in named}


def active_trace(trainer, after_step: int = 0) -> list[float]:
    return [h["prerl/active"] for h in trainer.state.log_history if "prerl/active" in h and h["step"] > after_step]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--zero3", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (GPU).")
    cli = parser.parse_args()

    if cli.zero3:
        import deepspeed

        deepspeed.init_distributed(dist_backend=cli.backend)
    else:
        dist.init_process_group(backend=cli.backend)
    rank = dist.get_rank()

    from prerl_trl import DSRLConfig, DSRLTrainer
    from prerl_trl.tiny import build_tiny_model, toy_dataset

    model_dir = os.path.join(cli.out, "model")
    if rank == 0:
        build_tiny_model(model_dir, warmup_steps=50)
    dist.barrier()

    zero3 = {
        "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
    }
    fields = dict(
        output_dir=os.path.join(cli.out, "run"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=cli.steps,
        dsrl_switch_step=2 if cli.zero3 else cli.steps + 10,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=not cli.zero3 or os.environ.get("DS_ACCELERATOR") == "cpu",
        save_strategy="steps" if cli.zero3 else "no",
        save_steps=1,
        deepspeed=zero3 if cli.zero3 else None,
        ddp_backend=None if cli.zero3 else "gloo",
        beta=0.01 if cli.zero3 else 0.0,
        prerl_kl_space="pretrain",  # a KL term in the pre-train-space loss: the reference pass runs in both phases
        num_iterations=2 if cli.zero3 else 1,
        seed=3,
    )
    args = DSRLConfig(**fields)
    dataset = toy_dataset(repeat=4)
    trainer = DSRLTrainer(model_dir, reward_funcs=rank_reward, args=args, train_dataset=dataset)
    losses: list[float] = []
    original = trainer.compute_loss

    def recording_compute_loss(*a, **k):
        loss = original(*a, **k)
        losses.append(float(loss.detach()))
        return loss

    trainer.compute_loss = recording_compute_loss
    trainer.train()
    trace = active_trace(trainer)
    if cli.zero3:
        trainer.save_model()
    torch.save(full_parameters(trainer), os.path.join(cli.out, f"params_rank{rank}.pt"))
    if cli.zero3:  # resume from the checkpoints on either side of the switch (dsrl_switch_step=2)
        resumed = {}
        for step in (1, cli.steps - 1):
            again = DSRLTrainer(
                model_dir, reward_funcs=rank_reward, train_dataset=dataset,
                args=DSRLConfig(**{**fields, "output_dir": os.path.join(cli.out, f"resumed{step}"), "save_strategy": "no"}),
            )
            again.train(resume_from_checkpoint=os.path.join(args.output_dir, f"checkpoint-{step}"))
            resumed[step] = active_trace(again, after_step=step)
        with open(os.path.join(cli.out, f"resumed_rank{rank}.json"), "w") as f:
            json.dump(resumed, f)
    with open(os.path.join(cli.out, f"losses_rank{rank}.json"), "w") as f:
        plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
        zero_stage = plugin.zero_stage if plugin is not None else None
        json.dump({"losses": losses, "active": trace, "world": dist.get_world_size(), "zero_stage": zero_stage}, f)
    ok = len(losses) == cli.steps and all(torch.isfinite(torch.tensor(losses)))
    dist.barrier()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
