"""The `prerl-trl` command line: train | demo | eval | grad-align | configs.

`train` is a thin wrapper over TRL's `TrlParser`, as in open-r1: a YAML recipe (`--config`) sets the fields of
`DSRLConfig` / `PreRLConfig` / `GRPOConfig`, TRL's `ModelConfig` and our `TrainScriptArguments`; command-line flags
override the recipe. Multi-GPU:

    accelerate launch --config_file "$(prerl-trl configs --accelerate zero3)" -m prerl_trl train --config recipe.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

TRAINERS = ("dsrl", "prerl", "grpo")


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
            "match of the paper's runs), 'format', dotted import paths (my_lib.my_reward), or a file and a function "
            "in it (./my_rewards.py:my_reward)."
        },
    )
    problem_field: str | None = field(
        default=None, metadata={"help": "Problem column of the dataset (default: problem, else question)."}
    )
    answer_field: str | None = field(default=None, metadata={"help": "Gold-answer column (default: answer)."})
    solution_field: str | None = field(
        default=None, metadata={"help": "Worked-solution column whose last \\boxed{} is the answer (if no answer column)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt of chat prompts (default: the paper's; '' for none)."}
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "Resume from the last checkpoint in output_dir (default). A finished run is not trained again, "
            "and a run of another base model or trainer is not resumed. false: start over, removing the earlier "
            "run's checkpoints."
        },
    )


def _config_class(trainer: str):
    from trl import GRPOConfig

    from .config import DSRLConfig, PreRLConfig

    return {"dsrl": DSRLConfig, "prerl": PreRLConfig, "grpo": GRPOConfig}[trainer]


def _recipe_path(argv: list[str]) -> str | None:
    """The `--config` YAML of the command line, if any."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def read_recipe(path: str) -> dict[str, Any]:
    """The `--config` YAML as a mapping; a missing, malformed or non-mapping file is one ValueError line."""
    import yaml

    try:
        with open(path) as f:
            recipe = yaml.safe_load(f)
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file (from {os.getcwd()}); check the path.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(
            f"--config {path}: not valid YAML{where} ({problem}); fix the file (each line is `option: value`)."
        ) from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise ValueError(
            f"--config {path}: the top level is a {type(recipe).__name__}, not a mapping; write one `option: value` "
            "per line (see 'prerl-trl configs' for examples)."
        )
    return recipe


def _trainer_choice(argv: list[str]) -> str:
    """Find `trainer` on the command line or in the `--config` YAML, before the dataclasses are chosen."""
    choice = "dsrl"
    recipe = _recipe_path(argv)
    if recipe is not None:
        choice = read_recipe(recipe).get("trainer", choice)
    for i, arg in enumerate(argv):
        if arg == "--trainer" and i + 1 < len(argv):
            choice = argv[i + 1]
        elif arg.startswith("--trainer="):
            choice = arg.split("=", 1)[1]
    if choice not in TRAINERS:
        raise ValueError(f"trainer={choice!r} is not supported. Use one of {', '.join(TRAINERS)}.")
    return choice


def _method_fields(trainer: str) -> set[str]:
    """Fields of DSRLConfig (the method's, a superset of PreRLConfig's) that `trainer`'s config class lacks."""
    import dataclasses

    from .config import DSRLConfig

    own = {f.name for f in dataclasses.fields(_config_class(trainer))}
    return {f.name for f in dataclasses.fields(DSRLConfig)} - own


def _option_names(strings: list[str]) -> list[str]:
    return [s[2:].split("=", 1)[0] for s in strings if s.startswith("--")]


def parse_train_args(argv: list[str]) -> tuple[TrainScriptArguments, Any, Any]:
    """Parse `prerl-trl train` arguments (recipe YAML + flags) into (script args, trainer config, ModelConfig).

    A recipe's keys that belong to another trainer (`dsrl_*` under `trainer: prerl`; `dsrl_*`, `prerl_*`, `rl_*`
    under `--trainer grpo`) are ignored with a notice, so that one recipe runs the method and its GRPO baseline. The
    same keys given as flags are an error: they were asked for explicitly."""
    from trl import ModelConfig, TrlParser

    trainer = _trainer_choice(argv)
    parser = TrlParser((TrainScriptArguments, _config_class(trainer), ModelConfig), prog="prerl-trl train")
    *parsed, from_config, from_flags = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    method = _method_fields(trainer)
    flags = _option_names(from_flags)
    if any(name in method for name in flags):
        names = ", ".join(f"--{name}" for name in flags if name in method)
        raise ValueError(
            f"{names}: not an option of --trainer {trainer}, which has no "
            + ("DSRL switch" if trainer == "prerl" else "pre-train-space phase")
            + ". Drop the flag, or use --trainer dsrl."
        )
    if from_flags:
        raise ValueError(f"unknown arguments {from_flags}: see 'prerl-trl train --help'.")
    ignored = [name for name in _option_names(from_config) if name in method]
    unknown = [name for name in _option_names(from_config) if name not in method]
    if unknown:
        raise ValueError(f"unknown keys in the --config recipe: {', '.join(unknown)}. Remove them or fix their names.")
    if ignored:
        print(
            f"prerl-trl train: trainer={trainer} ignores the recipe's {', '.join(ignored)} (options of "
            + ("DSRL's switch" if trainer == "prerl" else "PreRL / DSRL, which GRPO does not have")
            + ").",
            file=sys.stderr,
        )
    script_args, training_args, model_args = parsed
    return script_args, training_args, model_args


def _reward_funcs(names: list[str]) -> list:
    from .rewards import REWARD_FUNCTIONS
    from .rewards.custom import load_reward_functions

    return load_reward_functions(names, REWARD_FUNCTIONS)


def _warn_overlong_prompts(trainer: Any, dataset: Any) -> None:
    """Warn, with a count, when prompts leave no room for max_completion_length in the model's context."""
    from .data import count_overlong_prompts

    config = getattr(trainer.model.config, "text_config", None) or trainer.model.config
    context = getattr(config, "max_position_embeddings", None)
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    if not context:
        return
    room = context - trainer.args.max_completion_length
    template = {"tools": getattr(trainer, "tools", None) or None, "chat_template": getattr(trainer, "chat_template", None),
                **(getattr(trainer, "chat_template_kwargs", None) or {})}  # as the trainer renders its prompts
    overlong = count_overlong_prompts(dataset, tokenizer, room, **template)
    if overlong:
        print(
            f"prerl-trl train: warning: {overlong} of {len(dataset)} training prompts are longer than {room} tokens, "
            f"the model's context ({context}) less max_completion_length ({trainer.args.max_completion_length}): "
            "their rollouts fail or are cut short. Drop them, or lower max_completion_length.",
            file=sys.stderr,
        )


def train(argv: list[str]) -> int:
    """`prerl-trl train --config recipe.yaml [--field value ...]`."""
    from . import resume as runs
    from .config import check_learning_rate

    script_args, training_args, model_args = parse_train_args(argv)
    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required: set it in the recipe or pass --model_name_or_path.")
    check_learning_rate(training_args.learning_rate)
    runs.check_not_a_model_folder(training_args.output_dir, model_args.model_name_or_path)
    # One run at a time in output_dir: the main process (RANK 0 under torchrun / accelerate) holds its lock until the
    # run ends or dies; read from the environment, so that nothing distributed starts before the lock is taken.
    with runs.output_dir_lock(training_args.output_dir, enabled=os.environ.get("RANK", "0") == "0"):
        return _train(script_args, training_args, model_args, _recipe_path(argv))


def _train(script_args: TrainScriptArguments, training_args: Any, model_args: Any, recipe: str | None) -> int:
    from trl import get_peft_config, get_quantization_config

    from . import resume as runs
    from .data import SYSTEM_PROMPT, dataset_source, load_math_dataset
    from .evaluation import check_model_source
    from .trainer import DSRLTrainer, PreRLTrainer, quiet_checkpointing_deprecations
    from .trainer.dsrl import DSRL_STATE_FILE
    from .vllm_server import check_vllm_server

    identity = runs.RunIdentity.of(model_args.model_name_or_path, script_args.trainer)
    explicit = training_args.resume_from_checkpoint
    plan = runs.ResumePlan(explicit) if explicit else runs.plan_resume(
        training_args.output_dir, identity, resume=script_args.resume, max_steps=training_args.max_steps,
        num_train_epochs=training_args.num_train_epochs, optimizer=not training_args.save_only_model,
        state_files=(DSRL_STATE_FILE,) if script_args.trainer == "dsrl" else (),
    )
    if plan.finished:
        print(f"prerl-trl train: {plan.message}")
        return 0
    reward_funcs = _reward_funcs(script_args.reward_funcs)  # a wrong name fails here, before the model loads
    check_model_source(model_args.model_name_or_path, "model_name_or_path")
    check_vllm_server(training_args, model=model_args.model_name_or_path)
    init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    training_args.model_init_kwargs = {**init_kwargs, **(training_args.model_init_kwargs or {})}
    system_prompt = SYSTEM_PROMPT if script_args.system_prompt is None else (script_args.system_prompt or None)
    load = dict(conversational=script_args.conversational, system_prompt=system_prompt)
    fields = dict(
        problem_field=script_args.problem_field,
        answer_field=script_args.answer_field,
        solution_field=script_args.solution_field,
    )
    train_dataset = load_math_dataset(
        script_args.dataset_name, split=script_args.dataset_split, max_samples=script_args.max_train_samples,
        **fields, **load,
    )
    eval_dataset = (load_math_dataset(script_args.eval_dataset_name, **fields, **load)
                    if script_args.eval_dataset_name else None)
    quiet_checkpointing_deprecations()
    from .trainer.grpo import GuardedGRPOTrainer

    trainer_cls = {"dsrl": DSRLTrainer, "prerl": PreRLTrainer, "grpo": GuardedGRPOTrainer}[script_args.trainer]
    trainer = trainer_cls(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        **({"quantization_config": get_quantization_config(model_args)} if model_args.load_in_4bit or
           model_args.load_in_8bit else {}),
    )
    if recipe is not None:
        trainer.recipe = os.path.basename(recipe)  # recorded in the model card
    hub_id, trainer.dataset_source = dataset_source(script_args.dataset_name)  # the card names a local file as local
    if trainer.accelerator.is_main_process:
        _warn_overlong_prompts(trainer, train_dataset)
    trainer.add_callback(runs.RecordRunIdentity(identity))
    # Nothing is lost when a run dies: pick up the last checkpoint in output_dir unless told otherwise.
    if not script_args.resume and not explicit:
        if trainer.accelerator.is_main_process:
            removed = runs.start_over(training_args.output_dir)
            if removed:
                print(f"prerl-trl train: --resume false: removed {removed} checkpoint(s) of the earlier run in "
                      f"{training_args.output_dir}")
        trainer.accelerator.wait_for_everyone()
    elif plan.message:
        trainer.accelerator.print(plan.message)
    processes = trainer.accelerator.num_processes
    trainer.accelerator.print(
        f"Training with {script_args.trainer} on {processes} process{'es' if processes > 1 else ''} "
        f"({trainer.accelerator.device.type})"
    )
    trainer.train(resume_from_checkpoint=plan.checkpoint)
    # A SIGTERM under --enable_jit_checkpoint (the JIT checkpoint saved) leaves the run unfinished; without JIT a SIGTERM
    # ends the process, so an early stop there is a callback's (e.g. early stopping): the run is done.
    if getattr(training_args, "enable_jit_checkpoint", False) and runs.stopped_early(trainer.state):
        trainer.accelerator.print(
            f"prerl-trl train: stopped at optimizer step {trainer.state.global_step} of {trainer.state.max_steps} "
            f"(SIGTERM), not finished; run the same command again to resume from the last checkpoint in "
            f"{training_args.output_dir}."
        )
        return runs.PREEMPTED_EXIT
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        runs.record_finished(training_args.output_dir, identity, trainer.state, training_args.num_train_epochs)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=hub_id)
    return 0


def demo(argv: list[str]) -> int:
    """`prerl-trl demo`: DSRL on a tiny offline model and a toy task, on the CPU, with a held-out evaluation."""
    from .demo import main as run_demo

    return run_demo(argv)


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
    "demo": ("DSRL on a tiny offline model on the CPU, with accuracy before and after.", demo),
    "eval": ("avg@k / pass@k on math benchmarks.", None),
    "grad-align": ("Gradient alignment of log P(y) and log P(y|x).", None),
    "configs": ("List the bundled accelerate configs and recipes.", configs),
}


def _usage() -> str:
    lines = ["usage: prerl-trl [--version] COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "Run 'prerl-trl COMMAND --help' for the arguments of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except BrokenPipeError:  # `prerl-trl configs | head -1`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit: let that write go nowhere
        return 0


def _version() -> str:
    from . import __version__

    return __version__


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"prerl-trl {_version()}")
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
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print(f"prerl-trl {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as error:
        print(f"prerl-trl {command} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
