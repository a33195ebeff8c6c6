"""The `prerl-trl` command line: train | demo | eval | grad-align | configs.

`train` is a thin wrapper over TRL's `TrlParser`, as in open-r1: a YAML recipe (`--config`) sets the fields of
`DSRLConfig` / `PreRLConfig` / `GRPOConfig`, TRL's `ModelConfig` and our `TrainScriptArguments`; command-line flags
override the recipe. Multi-GPU:

    accelerate launch --config_file "$(prerl-trl configs --accelerate zero3)" -m prerl_trl train --config recipe.yaml
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

TRAINERS = ("dsrl", "prerl", "grpo")
REWARD_FUNCS = ("math_accuracy", "math_string_match", "format")


@dataclass
class TrainScriptArguments:
    """What `prerl-trl train` trains on, and with which trainer and rewards."""

    trainer: str = field(
        default="dsrl",
        metadata={"help": "Which trainer: 'dsrl' (NSR-PreRL then GRPO), 'prerl' (pre-train space only) or 'grpo'."},
    )
    dataset_name: str = field(
        default="math",
        metadata={
            "help": "A dataset of prerl_trl.data (math, math500, aime24, aime25, amc23, dapo17k, deepscaler, gsm8k), "
            "a hub id, or a local json / jsonl / parquet file with problem (or question) and answer columns."
        },
    )
    dataset_split: str | None = field(default=None, metadata={"help": "Split to train on (default: the dataset's)."})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "Optional evaluation dataset."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    conversational: bool = field(
        default=True, metadata={"help": "Chat-format prompts with the paper's system prompt (else plain text)."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy"],
        metadata={
            "help": "Reward functions: 'math_accuracy' (math-verify), 'math_string_match' (the Hendrycks-MATH string "
            "match of the paper's runs), 'format', or dotted import paths (my_lib.my_reward)."
        },
    )


def _config_class(trainer: str):
    from trl import GRPOConfig

    from .config import DSRLConfig, PreRLConfig

    return {"dsrl": DSRLConfig, "prerl": PreRLConfig, "grpo": GRPOConfig}[trainer]


def _trainer_choice(argv: list[str]) -> str:
    """Find `trainer` on the command line or in the `--config` YAML, before the dataclasses are chosen."""
    import yaml

    choice = "dsrl"
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            with open(argv[i + 1]) as f:
                choice = (yaml.safe_load(f) or {}).get("trainer", choice)
        elif arg.startswith("--config="):
            with open(arg.split("=", 1)[1]) as f:
                choice = (yaml.safe_load(f) or {}).get("trainer", choice)
    for i, arg in enumerate(argv):
        if arg == "--trainer" and i + 1 < len(argv):
            choice = argv[i + 1]
        elif arg.startswith("--trainer="):
            choice = arg.split("=", 1)[1]
    if choice not in TRAINERS:
        raise ValueError(f"trainer={choice!r} is not supported. Use one of {', '.join(TRAINERS)}.")
    return choice


def parse_train_args(argv: list[str]) -> tuple[TrainScriptArguments, Any, Any]:
    """Parse `prerl-trl train` arguments (recipe YAML + flags) into (script args, trainer config, ModelConfig)."""
    from trl import ModelConfig, TrlParser

    parser = TrlParser((TrainScriptArguments, _config_class(_trainer_choice(argv)), ModelConfig), prog="prerl-trl train")
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    return script_args, training_args, model_args


def _reward_funcs(names: list[str]) -> list:
    from .rewards import REWARD_FUNCTIONS as registry
    funcs = []
    for name in names:
        if name in registry:
            funcs.append(registry[name])
        elif "." in name:
            module, attr = name.rsplit(".", 1)
            sys.path.insert(0, os.getcwd())
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            raise ValueError(
                f"reward_funcs: {name!r} is unknown. Use {', '.join(REWARD_FUNCS)} or a dotted import path."
            )
    return funcs


def train(argv: list[str]) -> int:
    """`prerl-trl train --config recipe.yaml [--field value ...]`."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOTrainer, get_peft_config, get_quantization_config

    from .data import load_math_dataset
    from .trainer import DSRLTrainer, PreRLTrainer

    script_args, training_args, model_args = parse_train_args(argv)
    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required: set it in the recipe or pass --model_name_or_path.")
    init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    training_args.model_init_kwargs = {**init_kwargs, **(training_args.model_init_kwargs or {})}
    load = dict(conversational=script_args.conversational)
    train_dataset = load_math_dataset(
        script_args.dataset_name, split=script_args.dataset_split, max_samples=script_args.max_train_samples, **load
    )
    eval_dataset = load_math_dataset(script_args.eval_dataset_name, **load) if script_args.eval_dataset_name else None
    trainer_cls = {"dsrl": DSRLTrainer, "prerl": PreRLTrainer, "grpo": GRPOTrainer}[script_args.trainer]
    trainer = trainer_cls(
        model=model_args.model_name_or_path,
        reward_funcs=_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        **({"quantization_config": get_quantization_config(model_args)} if model_args.load_in_4bit or
           model_args.load_in_8bit else {}),
    )
    # Nothing is lost when a run dies: pick up the last checkpoint in output_dir unless told otherwise.
    resume = training_args.resume_from_checkpoint
    if resume is None and os.path.isdir(training_args.output_dir):
        resume = get_last_checkpoint(training_args.output_dir)
        if resume:
            trainer.accelerator.print(f"Resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return 0


def _bar_only_progress_class():
    from transformers.trainer_callback import ProgressCallback

    class BarOnlyProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return ProgressCallback, BarOnlyProgress


def demo(argv: list[str]) -> int:
    """`prerl-trl demo`: DSRL on a tiny offline model and a toy arithmetic task, on the CPU."""
    parser = argparse.ArgumentParser(prog="prerl-trl demo", description=demo.__doc__)
    parser.add_argument("--output-dir", default="prerl-trl-demo", help="Where to save model, tokenizer and card.")
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps (default 40).")
    parser.add_argument("--switch-step", type=int, default=20, help="DSRL switch step (default 20, as the paper).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=230, help="Supervised warm-up steps of the tiny model.")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    cli = parser.parse_args(argv)
    if cli.steps < 1 or not 0 <= cli.switch_step:
        parser.error(f"--steps must be >= 1 and --switch-step >= 0 (got {cli.steps}, {cli.switch_step})")

    import logging
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    from .config import DSRLConfig
    from .rewards import math_accuracy_reward
    from .tiny import build_tiny_model, toy_dataset
    from .trainer import DSRLTrainer

    ProgressCallback, _BarOnlyProgress = _bar_only_progress_class()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    hf_logging.set_verbosity_error()
    logging.getLogger("prerl_trl").setLevel(logging.WARNING)
    torch.manual_seed(cli.seed)
    output_dir = Path(cli.output_dir)
    print(f"Building a tiny Qwen2 model and tokenizer offline in {output_dir / 'base'} ...")
    base = build_tiny_model(output_dir / "base", warmup_steps=cli.warmup_steps, seed=cli.seed, warmup_noise=0.0)
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
    trainer = DSRLTrainer(
        str(base), reward_funcs=math_accuracy_reward, args=args, train_dataset=toy_dataset(repeat=40, seed=cli.seed)
    )
    # Keep the progress bar, drop the per-step metric dicts: the summary table below has what matters.
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_BarOnlyProgress())
    print(
        f"Training DSRL for {cli.steps} steps: NSR-PreRL on log P(y) for steps < {cli.switch_step}, then GRPO on "
        "log P(y|x). Task: single-digit addition, answer in \\boxed{}."
    )
    trainer.train()
    trainer.save_model()
    print("\nstep  phase     reward  kept_frac  marginal_logp")
    for entry in trainer.state.log_history:
        if "prerl/active" not in entry:
            continue
        phase = "NSR-PreRL" if entry["prerl/active"] == 1.0 else "GRPO"
        logp = entry.get("prerl/marginal_logp")
        print(
            f"{entry['step']:>4}  {phase:<9} {entry['reward']:6.3f}  {entry['prerl/kept_frac']:9.3f}  "
            + (f"{logp:13.3f}" if logp is not None else f"{'-':>13}")
        )
    print(f"\nSaved model, tokenizer and model card (README.md) to {output_dir}")
    return 0


def configs(argv: list[str]) -> int:
    """`prerl-trl configs`: list (or print the path of) the bundled accelerate configs and recipes."""
    parser = argparse.ArgumentParser(prog="prerl-trl configs", description=configs.__doc__)
    parser.add_argument("--accelerate", metavar="NAME", help="Print the path of accelerate config NAME (zero3, ...).")
    parser.add_argument("--recipe", metavar="NAME", help="Print the path of recipe NAME.")
    cli = parser.parse_args(argv)
    root = resources.files("prerl_trl")
    for folder, name in (("accelerate_configs", cli.accelerate), ("recipes", cli.recipe)):
        if name is not None:
            path = root / folder / (name if name.endswith(".yaml") else f"{name}.yaml")
            if not path.is_file():
                available = sorted(p.name for p in (root / folder).iterdir() if p.name.endswith(".yaml"))
                print(f"prerl-trl configs: no {folder} file {name!r}. Available: {', '.join(available)}", file=sys.stderr)
                return 2
            print(path)
            return 0
    for folder in ("accelerate_configs", "recipes"):
        print(f"{folder}:")
        for path in sorted((root / folder).iterdir(), key=lambda p: p.name):
            if path.name.endswith(".yaml"):
                print(f"  {path}")
    return 0


COMMANDS = {
    "train": ("Train with DSRL / PreRL / GRPO from a YAML recipe.", train),
    "demo": ("Run DSRL on a tiny offline model on the CPU (about a minute).", demo),
    "eval": ("avg@k / pass@k on math benchmarks.", None),
    "grad-align": ("Gradient alignment of log P(y) and log P(y|x).", None),
    "configs": ("List the bundled accelerate configs and recipes.", configs),
}


def _usage() -> str:
    lines = ["usage: prerl-trl COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "Run 'prerl-trl COMMAND --help' for the arguments of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"prerl-trl: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if command == "eval":
        from .evaluation import main as handler
    elif command == "grad-align":
        from .diagnostics import main as handler
    else:
        handler = COMMANDS[command][1]
    try:
        return int(handler(rest) or 0)
    except KeyboardInterrupt:
        print(f"prerl-trl {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as error:
        print(f"prerl-trl {command} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
