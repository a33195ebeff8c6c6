"""The bundled recipes: each one parses and builds its trainer through `prerl-trl train`, the paper recipes hold the
authors' settings, the paper DSRL recipe's switch gives 19 pre-train updates, and the one-GPU recipe's precision
settings let an lr=1e-6 step change the weights.

The expected values below are read by hand from the authors' scripts (run_code/*.sh of
github.com/Trae1ounG/Pretrain_Space_RLVR), not from the recipes.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import trl
import yaml
from transformers import AutoModelForCausalLM

from prerl_trl import DSRLTrainer, PreRLTrainer, rewards
from prerl_trl.cli import main, parse_train_args
from prerl_trl.guards import NonFiniteGuard
from prerl_trl.tiny import TOY_SYSTEM_PROMPT, toy_problems

RECIPES = resources.files("prerl_trl") / "recipes"
RECIPE_NAMES = sorted(p.name.removesuffix(".yaml") for p in RECIPES.iterdir() if p.name.endswith(".yaml"))

# The authors' DSRL script (DSRL_qwen3-4b.sh): every setting a recipe can carry, as the script writes it.
AUTHORS_DSRL = {
    "reward_funcs": ["math_string_match"],  # verl's default math reward for data_source qwen_*
    "dtype": "float32",  # FSDP keeps fp32 master weights ...
    "bf16": True,  # ... and computes in bf16
    "dsrl_switch_step": 19,  # pretrain_loss_disable_step=20, global_steps from 1: 19 updates
    "prerl_sample_filter": "negative",
    "prerl_loss_coef": 0.01,
    "prerl_scale_rewards": "none",
    "rl_loss_coef": 0.0,
    "num_generations": 8,
    "num_iterations": 1,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "beta": 0.0,
    "epsilon": 0.2,
    "epsilon_high": 0.2,
    "delta": 10.0,
    "vllm_importance_sampling_correction": False,
    "learning_rate": 1e-6,
    "lr_scheduler_type": "constant",
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "num_train_epochs": 6,
    "max_completion_length": 8192,
    "temperature": 1.0,
    "top_p": 1.0,
    "chat_template_kwargs": {"enable_thinking": False},
}
AUTHORS_GRPO = {
    k: v for k, v in AUTHORS_DSRL.items() if not k.startswith(("dsrl_", "prerl_", "rl_loss"))
} | {"epsilon_high": 0.28}
AUTHORS_NSR_PRERL = {k: v for k, v in AUTHORS_DSRL.items() if not k.startswith("dsrl_")}

PAPER_RECIPES = {
    "dsrl_qwen3_4b_math": ("run_code/DSRL_qwen3-4b.sh", "dsrl", AUTHORS_DSRL),
    "dsrl_qwen3_8b_math": ("run_code/DSRL_qwen3-4b.sh", "dsrl", AUTHORS_DSRL),
    "grpo_qwen3_4b_math": ("run_code/Baseline_qwen3-4b.sh", "grpo", AUTHORS_GRPO),
    "nsr_prerl_qwen3_4b_math": ("run_code/DSRL_abla_qwen3-4b.sh", "prerl", AUTHORS_NSR_PRERL),
}
ROLLOUTS_PER_STEP = 128 * 8  # train_batch_size=128 prompts x rollout.n=8, one update per batch
GPUS = 8


def _recipe_path(name: str) -> str:
    return str(RECIPES / f"{name}.yaml")


def _recipe(name: str) -> dict:
    with open(_recipe_path(name)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def toy_verl_file(tmp_path_factory) -> str:
    """The tiny model's toy task written as a verl-format parquet file (its own system prompt kept)."""
    rows = [
        {
            "data_source": "toy",
            "prompt": [{"role": "system", "content": TOY_SYSTEM_PROMPT}, {"role": "user", "content": question}],
            "reward_model": {"ground_truth": answer},
        }
        for question, answer in toy_problems() * 4
    ]
    path = tmp_path_factory.mktemp("toy") / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _cpu_overrides(model_dir: str, data_file: str, output_dir: Path, **extra) -> list[str]:
    """Flags that move a recipe onto the CPU and the tiny model; everything else stays the recipe's."""
    values = {
        "model_name_or_path": model_dir,
        "dataset_name": data_file,
        "output_dir": str(output_dir),
        "use_vllm": "false",
        "use_cpu": "true",
        "per_device_train_batch_size": "8",
        "gradient_accumulation_steps": "1",
        "num_generations": "4",
        "max_completion_length": "8",
        "attn_implementation": "eager",
    } | {k: str(v) for k, v in extra.items()}
    return [arg for key, value in values.items() for arg in (f"--{key}", value)]


def alternating_reward(completions, **kwargs) -> list[float]:
    """1, 0, 1, 0, ...: every group holds rewarded and negative rollouts, whatever the tiny model writes."""
    return [float(i % 2 == 0) for i in range(len(completions))]


class _Captured:
    trainer: trl.GRPOTrainer | None = None


def _run_train(monkeypatch, argv: list[str], train_steps: bool) -> trl.GRPOTrainer:
    """`prerl-trl train` as a user runs it; the trainer is captured (and trains only if `train_steps`)."""
    real_train = trl.GRPOTrainer.train

    def capture(self, *args, **kwargs):
        _Captured.trainer = self
        return real_train(self, *args, **kwargs) if train_steps else None

    monkeypatch.setattr(trl.GRPOTrainer, "train", capture)
    _Captured.trainer = None
    assert main(["train", *argv]) == 0
    assert _Captured.trainer is not None
    return _Captured.trainer


def test_every_recipe_is_listed():
    assert set(PAPER_RECIPES) <= set(RECIPE_NAMES)
    assert {"dsrl_qwen3_4b_math_improved", "dsrl_qwen2.5_0.5b_gsm8k"} <= set(RECIPE_NAMES)


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_parses_and_builds_its_trainer(name, tiny_model_dir, toy_verl_file, tmp_path, monkeypatch):
    """Parser and trainer construction with the recipe's own values (report_to included) on a default install."""
    recipe = _recipe(name)
    argv = ["--config", _recipe_path(name), *_cpu_overrides(tiny_model_dir, toy_verl_file, tmp_path / "out")]
    trainer = _run_train(monkeypatch, argv, train_steps=False)
    if recipe["trainer"] == "grpo":  # TRL's GRPOTrainer, with only the non-finite guard added (prerl_trl.guards)
        assert type(trainer).__bases__ == (NonFiniteGuard, trl.GRPOTrainer)
    else:
        assert type(trainer) is {"dsrl": DSRLTrainer, "prerl": PreRLTrainer}[recipe["trainer"]]
    assert trainer.args.report_to in ([], ["none"], "none")
    funcs = [rewards.REWARD_FUNCTIONS[n] for n in recipe["reward_funcs"]]
    assert [getattr(f, "__wrapped__", f) for f in trainer.reward_funcs] == funcs  # our trainers wrap them (output check)
    assert next(trainer.model.parameters()).dtype == getattr(torch, recipe.get("dtype", "float32"))


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipe_holds_the_authors_settings(name):
    script, trainer, expected = PAPER_RECIPES[name]
    text = Path(_recipe_path(name)).read_text()
    assert script in text.splitlines()[1] + text.splitlines()[2], "the header names the script it reproduces"
    script_args, args, model_args = parse_train_args(["--config", _recipe_path(name), "--use_cpu", "true"])
    assert script_args.trainer == trainer
    got = {}
    for key in expected:
        for source in (script_args, args, model_args):
            if hasattr(source, key):
                got[key] = getattr(source, key)
                break
    assert got == expected
    assert GPUS * args.per_device_train_batch_size * args.gradient_accumulation_steps == ROLLOUTS_PER_STEP
    assert args.steps_per_generation == args.gradient_accumulation_steps  # one update per generation batch


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipes_cite_the_paper_not_internal_files(name):
    text = Path(_recipe_path(name)).read_text()
    assert "PAPER.md" not in text and "shared/" not in text
    assert "2604.14142" in text
    assert _recipe(name).get("dtype") != "bfloat16", "trained weights are never loaded in bf16"


def test_paper_dsrl_switch_gives_19_pretrain_updates(tiny_model_dir, toy_verl_file, tmp_path, monkeypatch):
    """Train the tiny model past the paper recipe's switch and count the optimizer steps taken in pre-train space."""
    switch = _recipe("dsrl_qwen3_4b_math")["dsrl_switch_step"]
    steps = switch + 3
    argv = [
        "--config",
        _recipe_path("dsrl_qwen3_4b_math"),
        *_cpu_overrides(
            tiny_model_dir, toy_verl_file, tmp_path / "out", max_steps=steps, bf16="false", dtype="float32",
            gradient_checkpointing="false", learning_rate=1e-4, save_strategy="no", logging_steps=1,
        ),
    ]
    trainer = _run_train(monkeypatch, argv, train_steps=True)
    active = [e["prerl/active"] for e in trainer.state.log_history if "prerl/active" in e]
    assert len(active) == steps
    assert active == [1.0] * 19 + [0.0] * (steps - 19)


def _changed_fraction(trainer, model_dir: str) -> float:
    before = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    changed = total = 0
    for name, after in trainer.model.state_dict().items():
        if name in before and after.is_floating_point():
            changed += (after.float() != before[name].to(after.dtype).float()).sum().item()
            total += after.numel()
    return changed / total


@pytest.mark.parametrize("dtype, changes", [(None, True), ("bfloat16", False)], ids=["recipe", "bf16-weights"])
def test_one_gpu_recipe_precision_lets_a_1e_6_step_change_the_weights(
    dtype, changes, tiny_model_dir, toy_verl_file, tmp_path, monkeypatch
):
    """The one-GPU recipe's dtype/bf16/learning rate: one optimizer step moves most weights. Loading the weights in
    bf16 instead (the old recipe) rounds the same step away, which shows the check can fail."""
    name = "dsrl_qwen2.5_0.5b_gsm8k"
    recipe = _recipe(name)
    assert recipe["learning_rate"] == 1e-6 and recipe["bf16"] is True
    extra = {"dtype": dtype} if dtype else {}
    argv = [
        "--config",
        _recipe_path(name),
        *_cpu_overrides(tiny_model_dir, toy_verl_file, tmp_path / "out", max_steps=1, save_strategy="no", **extra),
        "--reward_funcs",
        f"{__name__}.alternating_reward",
    ]
    trainer = _run_train(monkeypatch, argv, train_steps=True)
    assert trainer.args.bf16 and trainer.args.learning_rate == 1e-6
    assert trainer.state.global_step == 1
    fraction = _changed_fraction(trainer, tiny_model_dir)
    if changes:
        assert fraction > 0.5, fraction
    else:
        assert fraction < 0.05, fraction
