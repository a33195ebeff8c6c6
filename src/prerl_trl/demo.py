"""`prerl-trl demo`: DSRL on a tiny offline model and a toy arithmetic task, on the CPU, with a held-out evaluation.

The run: build and warm up a tiny Qwen2 model (`prerl_trl.tiny`), measure its held-out avg@k, train DSRL
(NSR-PreRL, then GRPO) on the other problems, measure again at the switch and at the end, and print a per-step table
with each column explained and the before / after accuracies with 95% confidence intervals.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RUNTIME = "about a minute on 2 idle CPU cores"
COLUMNS = """\
Columns:
  step      optimizer step, counted from 0 as dsrl_switch_step counts: steps 0..{last_nsr} are NSR-PreRL, and the
            switch message above names the first GRPO step
  reward    mean reward of the step's {rollouts} rollouts ({prompts} training prompts x {gens} answers): the training
            accuracy of that batch, noisy (one batch of {rollouts} answers)
  kept      share of the rollouts in the loss. NSR-PreRL keeps only the wrong answers of groups that also hold a right
            one (advantage < 0); GRPO keeps all
  log P(y)  mean per-token log-probability of the rollouts scored WITHOUT the question (pre-train space), NSR-PreRL
            steps only"""
DOES_AND_DOES_NOT = """\
What this shows: which rollouts each phase trains on (kept), the switch from log P(y) to log P(y|x), and what the
run did to accuracy on the problems RL trained on and on problems it never saw. On this toy, expect accuracy to stay
flat or dip through NSR-PreRL, to rise on the trained-on problems during GRPO, and to change little on the held-out
ones: a 2-layer model learns each sum on its own, so there is little to transfer. What it does not show: the paper's
gains on math benchmarks, or that DSRL beats plain GRPO; a model that answers with one number has no reasoning for
NSR-PreRL to prune."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prerl-trl demo",
        description=f"DSRL on a tiny offline model and a toy arithmetic task, on the CPU ({RUNTIME}), with the "
        "accuracy on held-out and trained-on problems before and after.",
    )
    parser.add_argument(
        "--output-dir", default=None,
        help="where to save the trained model, tokenizer and card (default: a new temporary directory)",
    )
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps (default 40)")
    parser.add_argument("--switch-step", type=int, default=10,
                        help="dsrl_switch_step: NSR-PreRL for steps 0..N-1, then GRPO (default 10; the paper: 10-25)")
    parser.add_argument("--learning-rate", type=float, default=4e-4, help="constant, both phases (default 4e-4)")
    parser.add_argument("--warmup-steps", type=int, default=230, help="supervised warm-up steps of the tiny model")
    parser.add_argument("--warmup-noise", type=float, default=0.0,
                        help="share of warm-up answers replaced by a random digit (default 0)")
    parser.add_argument("--held-out", type=int, default=10, help="problems kept out of RL training (of 25)")
    parser.add_argument("--k", type=int, default=32, help="answers sampled per held-out problem (avg@k)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _percent(avg: float, low: float, high: float) -> str:
    return f"{100 * avg:5.1f}%  (95% CI {100 * low:5.1f}% to {100 * high:5.1f}%)"


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "accuracy rose (the interval of the change is above 0)."
    if high < 0:
        return "accuracy fell (the interval of the change is below 0)."
    return "the change is within noise (its interval includes 0)."


def step_table(log_history: list[dict[str, Any]]) -> list[str]:
    """The per-step rows: step (counted from 0), phase, reward, kept share, log P(y)."""
    lines = ["step  phase      reward   kept  log P(y)"]
    for entry in log_history:
        if "prerl/active" not in entry:
            continue
        phase = "NSR-PreRL" if entry["prerl/active"] == 1.0 else "GRPO"
        logp = entry.get("prerl/marginal_logp")
        lines.append(
            f"{entry['step'] - 1:>4}  {phase:<9}  {entry['reward']:6.3f}  {entry['prerl/kept_frac']:5.3f}  "
            + (f"{logp:8.3f}" if logp is not None else f"{'-':>8}")
        )
    return lines


def main(argv: list[str]) -> int:
    parser = build_parser()
    cli = parser.parse_args(argv)
    if cli.steps < 1 or not 0 <= cli.switch_step or cli.k < 2 or cli.warmup_steps < 0:
        parser.error(
            f"need --steps >= 1, --switch-step >= 0, --k >= 2 and --warmup-steps >= 0 (got {cli.steps}, "
            f"{cli.switch_step}, {cli.k}, {cli.warmup_steps})"
        )
    started = time.monotonic()

    import logging
    import warnings

    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging

    from .config import DSRLConfig
    from .evaluation import avg_at_n_ci, library_progress_bars, load_tokenizer, paired_difference_ci
    from .rewards import math_accuracy_reward
    from .tiny import build_tiny_model, toy_correct_counts, toy_dataset, toy_split
    from .trainer import DSRLTrainer

    train_problems, held_out = toy_split(cli.held_out, seed=cli.seed)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    hf_logging.set_verbosity_error()
    logging.getLogger("prerl_trl").setLevel(logging.WARNING)
    if "OMP_NUM_THREADS" not in os.environ:
        # A model this small gains nothing from a second thread, and on a busy machine (CI) the threads' spin-waits
        # cost several times the work itself.
        torch.set_num_threads(1)
    torch.manual_seed(cli.seed)
    output_dir = Path(cli.output_dir) if cli.output_dir else Path(tempfile.mkdtemp(prefix="prerl-trl-demo-"))
    nsr_steps = min(cli.switch_step, cli.steps)
    print(
        f"prerl-trl demo ({RUNTIME}).\n"
        "1. A tiny Qwen2 model (2 layers, width 64) is built offline and warmed up on a+b= (a, b <= 4), answer in\n"
        "   \\boxed{}: right part of the time. The warm-up also shows it answers with no question, so that, like a\n"
        "   pre-trained LLM, it has a distribution P(y) of answers alone, which NSR-PreRL trains on.\n"
        f"2. {len(held_out)} of the 25 problems are held out; RL trains on the other {len(train_problems)}.\n"
        f"3. DSRL for {cli.steps} steps: NSR-PreRL (steps 0..{nsr_steps - 1}: wrong answers only, scored as log P(y)"
        f" without the question), then GRPO on log P(y|x).\n"
        f"4. Held-out avg@{cli.k} before, at the switch and after, with 95% confidence intervals.\n"
    )
    with library_progress_bars(False):
        base = build_tiny_model(
            output_dir / "base", warmup_steps=cli.warmup_steps, seed=cli.seed, warmup_noise=cli.warmup_noise,
            pretrain_rows=4,
        )
    tokenizer = load_tokenizer(str(base))

    splits = {"held-out": held_out, "trained-on": train_problems}
    evaluations: dict[str, dict[str, list[int]]] = {name: {} for name in splits}

    def evaluate(model: Any, stage: str) -> None:
        for name, problems in splits.items():
            evaluations[name][stage] = toy_correct_counts(model, tokenizer, problems, cli.k, seed=cli.seed + 1)

    class HeldOutAtSwitch(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == cli.switch_step:
                evaluate(model, "switch")

    class BarOnly(ProgressCallback):  # the progress bar without the per-step metric dicts: the table has them
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    args = DSRLConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=64,
        num_generations=8,
        max_completion_length=8,
        max_steps=cli.steps,
        dsrl_switch_step=cli.switch_step,
        learning_rate=cli.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        seed=cli.seed,
        disable_tqdm=False,
    )
    with library_progress_bars(False):
        trainer = DSRLTrainer(
            str(base), reward_funcs=math_accuracy_reward, args=args, processing_class=tokenizer,
            train_dataset=toy_dataset(repeat=200, seed=cli.seed, problems=train_problems),
            callbacks=[HeldOutAtSwitch()],
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarOnly())
    evaluate(trainer.model, "base")
    print(f"Held-out avg@{cli.k} of the base model: {_percent(*avg_at_n_ci(evaluations['held-out']['base'], cli.k))}")
    trainer.train()
    evaluate(trainer.model, "final")
    with library_progress_bars(False):
        trainer.save_model()

    print("\n" + "\n".join(step_table(trainer.state.log_history)))
    print(
        COLUMNS.format(
            last_nsr=nsr_steps - 1, rollouts=args.per_device_train_batch_size,
            prompts=args.per_device_train_batch_size // args.num_generations, gens=args.num_generations,
        )
    )
    stages = [("base model", "base")]
    if "switch" in evaluations["held-out"]:
        stages.append((f"after NSR-PreRL (step {cli.switch_step})", "switch"))
    stages.append((f"after {'GRPO' if cli.switch_step < cli.steps else 'NSR-PreRL'} (step {cli.steps})", "final"))
    verdicts = {}
    for name, problems in splits.items():
        what = "RL never trained on" if name == "held-out" else "RL trained on"
        print(f"\n{name.capitalize()} avg@{cli.k} ({len(problems)} problems {what}, {cli.k} answers each, temperature 1):")
        for label, stage in stages:
            print(f"  {label:<28} {_percent(*avg_at_n_ci(evaluations[name][stage], cli.k))}")
        change, low, high = paired_difference_ci(evaluations[name]["base"], evaluations[name]["final"], cli.k)
        print(
            f"  {'change, final - base':<28} {100 * change:+5.1f} points (95% CI {100 * low:+.1f} to "
            f"{100 * high:+.1f}, paired over problems)"
        )
        verdicts[name] = _verdict(low, high)
    print(f"\nOn held-out problems, {verdicts['held-out']} On trained-on problems, {verdicts['trained-on']}")
    print("\n" + DOES_AND_DOES_NOT)
    print(f"\nSaved model, tokenizer and model card (README.md) to {output_dir} ({time.monotonic() - started:.0f} s).")
    return 0
