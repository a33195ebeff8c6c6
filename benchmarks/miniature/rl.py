"""One RL run from the base model: GRPO (TRL), PreRL with sample filter all / positive / negative, or DSRL.

Every method gets the same budget, data order, generation settings and seed; only the trainer and its config
differ. A callback evaluates the policy on held-out problems every `eval_every` optimizer steps.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer

from .evaluate import evaluate
from .task import Problem, exact_match_reward

METHODS = ("grpo", "prerl_all", "psr_prerl", "nsr_prerl", "dsrl")
LABELS = {
    "grpo": "GRPO (TRL)",
    "prerl_all": "PreRL (all)",
    "psr_prerl": "PSR-PreRL",
    "nsr_prerl": "NSR-PreRL",
    "dsrl": "DSRL",
}
# DSRL ablations: `dsrl_switchN` switches at step N instead of the preset's; `dsrl_reset` resets AdamW at the switch.
_DSRL_VARIANT = re.compile(r"dsrl_(?:switch(?P<switch>\d+)|(?P<reset>reset))")
FIXED_EVAL_SEED = 1_000_003  # the one draw of `eval_draw="fixed"`


def check_method(method: str) -> str:
    if method in METHODS or _DSRL_VARIANT.fullmatch(method):
        return method
    raise ValueError(f"method={method!r} is not known; use one of {', '.join(METHODS)}, dsrl_switchN (N: the switch "
                     "step) or dsrl_reset")


def label(method: str) -> str:
    variant = _DSRL_VARIANT.fullmatch(method)
    if method in LABELS or not variant:
        return LABELS.get(method, method)
    return f"DSRL, switch at {variant['switch']}" if variant["switch"] else "DSRL, AdamW reset at the switch"


def eval_seed(s: RLSettings, seed: int, step: int) -> int:
    """The sampling seed of an evaluation: fixed, or one per (training seed, step) as in the first presets."""
    return FIXED_EVAL_SEED if s.eval_draw == "fixed" else seed * 100_003 + step


@dataclass(frozen=True)
class RLSettings:
    steps: int = 30
    prompts_per_step: int = 16
    num_generations: int = 8
    learning_rate: float = 3e-5
    max_completion_length: int = 48
    dsrl_switch_step: int = 10
    eval_every: int = 10
    eval_k: int = 16
    # "per-step": the sampling seed depends on the training seed and the step (the first presets); "fixed": one draw
    # for every seed, method and step (common random numbers, so paired differences lose the draw's noise).
    eval_draw: str = "per-step"
    # Explicit evaluation steps (the last step is always evaluated); empty: every `eval_every` steps.
    eval_steps: tuple[int, ...] = ()
    # bf16 mixed precision (autocast over fp32 weights, as TRL's `bf16=True`) with TF32 matmuls, for training and
    # evaluation alike; on a GPU only (the CPU runs stay fp32).
    bf16: bool = False

    def evaluates_at(self, step: int) -> bool:
        if step == self.steps:
            return True
        return step in self.eval_steps if self.eval_steps else step % self.eval_every == 0


def _config(method: str, s: RLSettings, seed: int, output_dir: str, use_cpu: bool, extra: dict | None = None
            ) -> GRPOConfig:
    """The method's config; `extra` holds PreRLConfig / DSRLConfig fields for every method but GRPO."""
    extra = extra or {}
    common = dict(
        output_dir=output_dir,
        per_device_train_batch_size=s.prompts_per_step * s.num_generations,
        num_generations=s.num_generations,
        max_completion_length=s.max_completion_length,
        max_steps=s.steps,
        learning_rate=s.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.01,
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="dapo",
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=use_cpu,
        bf16=s.bf16 and not use_cpu,
        tf32=True if s.bf16 and not use_cpu else None,
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
    )
    if method == "grpo":
        return GRPOConfig(**common)
    if method == "dsrl":
        return DSRLConfig(**common, dsrl_switch_step=s.dsrl_switch_step, **extra)
    variant = _DSRL_VARIANT.fullmatch(method)
    if variant:
        switch = int(variant["switch"]) if variant["switch"] else s.dsrl_switch_step
        return DSRLConfig(**common, dsrl_switch_step=switch, dsrl_reset_optimizer=bool(variant["reset"]), **extra)
    prerl_filter = {"prerl_all": "all", "psr_prerl": "positive", "nsr_prerl": "negative"}
    if method not in prerl_filter:
        raise ValueError(f"method={method!r} is not known; use one of {', '.join(METHODS)}")
    return PreRLConfig(**common, prerl_sample_filter=prerl_filter[method], **extra)


class HeldOutEval(TrainerCallback):
    """Evaluate every `eval_every` optimizer steps. The sampling seed depends on the training seed and step only
    (`eval_seed`), so every method at a given seed and step is measured on the same random draw; with
    `eval_draw="fixed"` every seed and step share it too."""

    def __init__(self, tokenizer, problems: list[Problem], s: RLSettings, seed: int,
                 log_path: Path | None = None) -> None:
        self.tokenizer, self.problems, self.s, self.seed = tokenizer, problems, s, seed
        self.history: list[dict] = []
        self.log_path = log_path

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if self.s.evaluates_at(step) or step == state.max_steps:
            metrics = evaluate(model, self.tokenizer, self.problems, self.s.eval_k, self.s.max_completion_length,
                               seed=eval_seed(self.s, self.seed, step), bf16=self.s.bf16)
            self.history.append({"step": step, **metrics})
            if self.log_path is not None:  # each point on disk at once: a killed run leaves its curve so far
                with open(self.log_path, "a") as f:
                    f.write(json.dumps({"seed": self.seed, "step": step, **metrics}) + "\n")
            acc = f"avg@{self.s.eval_k}"
            print(f"[miniature]   seed {self.seed}, lr {self.s.learning_rate:g}, step {step}: held-out {acc} "
                  f"{metrics[acc]:.3f}, length {metrics['response_length']:.1f}", flush=True)


class OptimizerProbe(TrainerCallback):
    """What AdamW does at each step: the RMS of the parameter update, and the mean square root of AdamW's second
    moment (`exp_avg_sq`, the gradient scale it divides by) after the step. At a DSRL switch the second moment holds
    the small pre-train-space gradients, so the first GRPO updates are larger than GRPO's own steady state unless
    the state is reset."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self._before: torch.Tensor | None = None

    def _flat(self, model) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).float().clone()

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._before = self._flat(model)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        after = self._flat(model)
        sq = [st["exp_avg_sq"] for st in optimizer.state.values() if "exp_avg_sq" in st]
        sqrt_v = (sum(v.sqrt().sum().item() for v in sq) / sum(v.numel() for v in sq)) if sq else float("nan")
        self.history.append({"step": state.global_step,
                             "update_rms": (after - self._before).pow(2).mean().sqrt().item(),
                             "adam_sqrt_v": sqrt_v})


def rl_dataset(problems: list[Problem], seed: int) -> Dataset:
    """The RL prompts in a seeded order: a problem's `messages` (a conversation, which TRL renders with the chat
    template) when it has them, else its prompt text."""
    rows = list(problems)
    random.Random(seed).shuffle(rows)
    prompts = [list(p.messages) if getattr(p, "messages", None) else p.prompt for p in rows]
    return Dataset.from_dict({"prompt": prompts, "answer": [p.answer for p in rows]})


def run(method: str, base_dir: str, train: list[Problem], held_out: list[Problem], s: RLSettings, seed: int,
        output_dir: str, use_cpu: bool, extra: dict | None = None) -> dict:
    """Train one method from the base and return its held-out curve and per-step training logs. `extra`: config
    fields of the package's trainers (e.g. `prerl_context`), for every method but GRPO."""
    trainer_class = GRPOTrainer if method == "grpo" else DSRLTrainer if method.startswith("dsrl") else PreRLTrainer
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    log_path = Path(output_dir) / "eval.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    evaluator, probe = HeldOutEval(tokenizer, held_out, s, seed, log_path), OptimizerProbe()
    trainer = trainer_class(
        model=base_dir,
        reward_funcs=exact_match_reward,
        args=_config(method, s, seed, output_dir, use_cpu, extra),
        train_dataset=rl_dataset(train, seed),
        processing_class=tokenizer,
        callbacks=[evaluator, probe],
    )
    trainer.remove_callback(PrinterCallback)  # the per-step logs go to results.json, not the terminal
    start, cpu_start = time.time(), time.process_time()
    trainer.train()
    keep = ("reward", "learning_rate", "grad_norm", "completions/mean_length", "prerl/kept_frac", "prerl/active",
            "behaviors/transition", "behaviors/reflection")
    probes = {p["step"]: p for p in probe.history}
    train_log = [
        {"step": e["step"], **{k: e[k] for k in keep if k in e},
         **{k: v for k, v in probes.get(e["step"], {}).items() if k != "step"}}
        for e in trainer.state.log_history if "reward" in e
    ]
    return {"seconds": time.time() - start, "cpu_seconds": time.process_time() - cpu_start,
            "eval": evaluator.history, "train": train_log}
