"""Cost of PreRL / DSRL against TRL's GRPOTrainer, side by side in one process.

For each trainer: the same model, data and seed; we time (1) whole training steps (generation included) and (2) the
loss + backward on one fixed generated batch, which isolates what PreRL changes (scoring in pre-train space, and the
second forward pass of joint mode). Prints ratios against GRPO and writes JSON.

    python benchmarks/trainer_overhead.py                       # tiny model, CPU
    python benchmarks/trainer_overhead.py --shape qwen2.5-0.5b --device cuda --bf16 --completion-length 512

The `qwen2.5-0.5b` shape is randomly initialised from its config (no download).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import loss_phase  # noqa: E402  (benchmarks/, beside this script)
import torch  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer  # noqa: E402
from prerl_trl.tiny import build_tiny_model, toy_dataset  # noqa: E402


def build_model(shape: str, directory: str) -> str:
    if shape == "tiny":  # warmed up, so that rollouts mix right and wrong answers
        return str(build_tiny_model(directory, warmup_steps=100))
    return loss_phase.build_model(shape, directory, max_positions=32768)


def parity_reward(completion_ids, **kwargs) -> list[float]:
    return [float(sum(ids) % 2) for ids in completion_ids]


def run(name, trainer_cls, config_cls, model_dir, cli, extra) -> dict:
    torch.manual_seed(0)
    args = config_cls(
        output_dir=os.path.join(cli.workdir, name), per_device_train_batch_size=cli.prompts * cli.generations,
        num_generations=cli.generations, max_completion_length=cli.completion_length, max_steps=cli.steps,
        learning_rate=1e-5, logging_steps=1, report_to="none", save_strategy="no", bf16=cli.bf16,
        use_cpu=cli.device == "cpu", seed=0, disable_tqdm=True,
        generation_kwargs={"min_new_tokens": cli.completion_length} if cli.force_length else None, **extra,
    )
    trainer = trainer_cls(model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(repeat=50))
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    step_times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][1:]  # skip the first step

    trainer.current_gradient_accumulation_steps = 1
    rows = [trainer.train_dataset[p] for p in range(cli.prompts) for _ in range(cli.generations)]
    trainer.model.train()
    batch = trainer._generate_and_score_completions(rows)
    loss_times = []
    for _ in range(cli.loss_repeats):
        if cli.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.compute_loss(trainer.model, batch).backward()
        if cli.device == "cuda":
            torch.cuda.synchronize()
        loss_times.append(time.perf_counter() - t0)
        trainer.model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cli.device == "cuda" else None
    del trainer
    return {
        "train_seconds": total,
        "step_time_median": statistics.median(step_times) if step_times else None,
        "loss_backward_median": statistics.median(loss_times[1:] or loss_times),
        "peak_gpu_gib": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "qwen2.5-0.5b"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--completion-length", type=int, default=16)
    parser.add_argument("--force-length", action="store_true", help="Generate exactly --completion-length tokens.")
    parser.add_argument("--loss-repeats", type=int, default=5)
    parser.add_argument("--output", default="benchmarks/results/trainer_overhead.json")
    cli = parser.parse_args()
    cli.workdir = tempfile.mkdtemp(prefix="prerl_bench_")
    model_dir = build_model(cli.shape, os.path.join(cli.workdir, "model"))

    runs = {
        "grpo": (GRPOTrainer, GRPOConfig, {}),
        "nsr_prerl": (PreRLTrainer, PreRLConfig, {}),
        "joint": (PreRLTrainer, PreRLConfig, {"rl_loss_coef": 1.0}),
        "dsrl": (DSRLTrainer, DSRLConfig, {"dsrl_switch_step": cli.steps // 2}),
    }
    results: dict[str, dict] = {}
    for name, (trainer_cls, config_cls, extra) in runs.items():
        results[name] = run(name, trainer_cls, config_cls, model_dir, cli, extra)
    base = results["grpo"]
    print(f"{'trainer':<10} {'step s':>8} {'x GRPO':>7} {'loss+bwd s':>11} {'x GRPO':>7}")
    for name, r in results.items():
        step_ratio = r["step_time_median"] / base["step_time_median"] if r["step_time_median"] else float("nan")
        loss_ratio = r["loss_backward_median"] / base["loss_backward_median"]
        r["step_time_ratio_vs_grpo"], r["loss_backward_ratio_vs_grpo"] = step_ratio, loss_ratio
        print(f"{name:<10} {r['step_time_median'] or float('nan'):8.4f} {step_ratio:7.2f} "
              f"{r['loss_backward_median']:11.4f} {loss_ratio:7.2f}")
    os.makedirs(os.path.dirname(cli.output) or ".", exist_ok=True)
    setup = {k: v for k, v in vars(cli).items() if k != "workdir"}
    device = torch.cuda.get_device_name(0) if cli.device == "cuda" else "cpu"
    with open(cli.output, "w") as f:
        json.dump({"setup": setup, "device": device, "results": results}, f, indent=2)
    print(f"wrote {cli.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
