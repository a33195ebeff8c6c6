"""What a user meets after the Quickstart: reruns, resumes, bad numbers and bad files give one clear outcome, never a
silent wrong result; the command line answers without importing the training stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch
from conftest import boxed_reward

from prerl_trl import DSRLConfig, DSRLTrainer
from prerl_trl.cli import main
from prerl_trl.guards import NonFiniteGuard, NonFiniteTrainingError
from prerl_trl.tiny import toy_dataset, toy_problems

CPU = ["--bf16", "false", "--use_cpu", "true"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def train_args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model_name_or_path", model, "--dataset_name", str(data), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "6",
        "--report_to", "none", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
        "--disable_tqdm", "true", *CPU, *extra,
    ]


def one_line(err: str) -> str:
    """The one line a failure prints (progress bars of `datasets` aside)."""
    lines = [line for line in err.splitlines() if line.strip() and not re.search(r"(examples|it)/s\]|\d+%\|", line)]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def toy_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "toy.jsonl", [{"problem": q, "answer": a} for q, a in toy_problems()])


def checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))


# ---------------------------------------------------------------------------------------------------------------------
# Resume
def test_rerunning_a_finished_run_says_so_and_trains_nothing(tiny_model_dir, toy_file, tmp_path, capsys):
    out = tmp_path / "run"
    command = train_args(tiny_model_dir, toy_file, out, "--dsrl_switch_step", "1", "--max_steps", "2")
    assert main(command) == 0
    assert checkpoint_steps(out) == [1, 2]
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "finished run (2 optimizer steps)" in captured.out and "Training with" not in captured.out
    assert checkpoint_steps(out) == [1, 2], "a rerun of a finished run trained past max_steps"
    assert (out / "model.safetensors").read_bytes() == weights


def test_a_run_of_another_model_or_trainer_is_not_resumed(tiny_model_dir, toy_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, toy_file, out, "--dsrl_switch_step", "1", "--max_steps", "2",
                           "--save_steps", "2")) == 0
    capsys.readouterr()
    other_model = tmp_path / "other_model"
    shutil.copytree(tiny_model_dir, other_model)
    for extra, names in (
        (["--trainer", "prerl", "--model_name_or_path", tiny_model_dir], ("trainer 'dsrl' (now 'prerl')",)),
        (["--model_name_or_path", str(other_model)], (repr(os.path.abspath(tiny_model_dir)), repr(str(other_model)))),
    ):
        assert main([*train_args(tiny_model_dir, toy_file, out, "--max_steps", "3"), *extra]) == 1
        line = one_line(capsys.readouterr().err)
        assert all(name in line for name in names) and "--output_dir" in line and "--resume false" in line
    assert checkpoint_steps(out) == [2]
    # --resume false starts over there: the old checkpoints go, the new run trains from step 0 with the new trainer
    assert main([*train_args(tiny_model_dir, toy_file, out, "--max_steps", "2", "--resume", "false"),
                 "--trainer", "prerl"]) == 0
    assert "removed 1 checkpoint(s)" in capsys.readouterr().out
    assert checkpoint_steps(out) == [1, 2]
    assert json.loads((out / "checkpoint-1" / "prerl_run.json").read_text())["trainer"] == "prerl"
    assert "PreRLTrainer" in (out / "README.md").read_text()


def test_the_resume_line_says_when_the_switch_happened(tiny_model_dir, tmp_path, capsys):
    def config(steps):
        return DSRLConfig(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
            max_completion_length=6, max_steps=steps, dsrl_switch_step=2, report_to="none", bf16=False, use_cpu=True,
            save_strategy="steps", save_steps=3, disable_tqdm=True,
        )

    DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=config(3), train_dataset=toy_dataset()).train()
    assert "switching from NSR-PreRL (log P(y)) to GRPO (log P(y|x)) at optimizer step 2" in capsys.readouterr().out
    resumed = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=config(4), train_dataset=toy_dataset())
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    out = capsys.readouterr().out
    assert "resumed at optimizer step 3, in the GRPO phase" in out and "at optimizer step 2" in out
    assert "switching" not in out


# ---------------------------------------------------------------------------------------------------------------------
# Bad numbers and bad data
@pytest.mark.parametrize("trainer", ["dsrl", "grpo"])
@pytest.mark.parametrize("rate", ["inf", "-1e-5", "nan"])
def test_a_non_finite_or_negative_learning_rate_is_refused(tiny_model_dir, toy_file, tmp_path, capsys, trainer, rate):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, toy_file, out, "--trainer", trainer, f"--learning_rate={rate}",
                           "--max_steps", "1")) == 1
    assert "learning_rate=" in one_line(capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())


class _LossTurnsNaN(DSRLTrainer):
    """The loss of every optimizer step after the first is NaN (as fp16 overflow or a broken reward would make it)."""

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        return loss * float("nan") if self.state.global_step >= 1 else loss


def test_training_stops_at_the_first_non_finite_step_and_keeps_the_last_good_state(tiny_model_dir, tmp_path):
    args = DSRLConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
        max_steps=4, dsrl_switch_step=1, learning_rate=1e-3, report_to="none", bf16=False, use_cpu=True,
        save_strategy="steps", save_steps=1, disable_tqdm=True, logging_steps=1,
    )
    trainer = _LossTurnsNaN(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset())
    with pytest.raises(NonFiniteTrainingError, match=r"optimizer step 2: the loss is not finite.*learning_rate"):
        trainer.train()
    assert checkpoint_steps(tmp_path / "out") == [1]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "out" / "checkpoint-1" / "model.safetensors"))
    params = dict(trainer.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert all(torch.equal(params[name], value) for name, value in saved.items() if name in params)


def test_the_grpo_trainer_of_the_cli_has_the_guard():
    import importlib

    from trl import GRPOTrainer

    from prerl_trl.trainer.grpo import GuardedGRPOTrainer

    assert issubclass(GuardedGRPOTrainer, GRPOTrainer) and issubclass(GuardedGRPOTrainer, NonFiniteGuard)
    # A class defined where its name says (pickling, docs and tracebacks find it there).
    module = importlib.import_module(GuardedGRPOTrainer.__module__)
    assert getattr(module, GuardedGRPOTrainer.__qualname__) is GuardedGRPOTrainer


def test_a_dataset_that_filtering_empties_stops_in_one_line(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "blank.jsonl", [{"problem": q, "answer": ""} for q, _ in toy_problems()[:10]])
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, data, out, "--max_steps", "2")) == 1
    line = one_line(capsys.readouterr().err)
    assert "blank.jsonl" in line and "all 10 rows were dropped" in line and "--answer-field" in line
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_a_zero_byte_data_file_is_one_line_in_train(tiny_model_dir, tmp_path, capsys, suffix):
    data = tmp_path / f"empty{suffix}"
    data.write_bytes(b"")
    assert main(train_args(tiny_model_dir, data, tmp_path / "run", "--max_steps", "1")) == 1
    line = one_line(capsys.readouterr().err)
    assert str(data) in line and "empty (0 bytes)" in line


def test_a_missing_column_names_the_flag(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"q": "1+2=", "gold": "3"}])
    assert main(train_args(tiny_model_dir, data, tmp_path / "run", "--max_steps", "1")) == 1
    line = one_line(capsys.readouterr().err)
    assert "no problem column" in line and "--problem-field" in line and "no a " not in line


@pytest.mark.parametrize("text, expected", [
    ("trainer: dsrl\nmodel_name_or_path: [x\n", "not valid YAML at line"),
    ("trainer: dsrl\n\tlearning_rate: 1\n", "not valid YAML"),
    ("- trainer: dsrl\n- max_steps: 3\n", "the top level is a list, not a mapping"),
    ("just a sentence\n", "the top level is a str, not a mapping"),
])
def test_a_broken_recipe_is_one_line(tmp_path, capsys, text, expected):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["train", "--config", str(recipe), *CPU]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(recipe) in line and expected in line


# ---------------------------------------------------------------------------------------------------------------------
# Logs
def test_marginal_logp_is_not_logged_on_a_step_without_rollouts_in_the_loss(tiny_model_dir, tmp_path):
    def always_right(completions, **kwargs):
        return [1.0] * len(completions)

    args = DSRLConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
        max_steps=2, dsrl_switch_step=10, report_to="none", bf16=False, use_cpu=True, save_strategy="no",
        disable_tqdm=True, logging_steps=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run is too short to switch
        trainer = DSRLTrainer(tiny_model_dir, reward_funcs=always_right, args=args, train_dataset=toy_dataset())
        trainer.train()
    steps = [h for h in trainer.state.log_history if "prerl/kept_frac" in h]
    assert len(steps) == 2 and all(h["prerl/kept_frac"] == 0.0 for h in steps)
    assert not any("prerl/marginal_logp" in h for h in steps)


def test_the_too_short_to_switch_warning_is_given_once(tiny_model_dir, tmp_path, caplog):
    args = DSRLConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
        max_steps=1, dsrl_switch_step=20, report_to="none", bf16=False, use_cpu=True, save_strategy="no",
        disable_tqdm=True,
    )
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset())
    with pytest.warns(UserWarning) as record:
        trainer.train()
    said = [str(w.message) for w in record if "never switches" in str(w.message)]
    said += [r.getMessage() for r in caplog.records if "never switches" in r.getMessage()]
    assert len(said) == 1


def test_the_gradient_checkpointing_deprecation_is_printed_once(tiny_model_dir, toy_file, tmp_path):
    command = [sys.executable, "-m", "prerl_trl", *train_args(tiny_model_dir, toy_file, tmp_path / "run"),
               "--max_steps", "3", "--dsrl_switch_step", "1", "--gradient_checkpointing", "true",
               "--save_strategy", "no"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [line for line in done.stderr.splitlines() if "FutureWarning" in line and "checkpointing" in line]
    assert len(printed) == 1, printed


# ---------------------------------------------------------------------------------------------------------------------
# The command line
def test_version_matches_the_installed_distribution(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"prerl-trl {metadata.version('prerl-trl')}"


def test_help_version_and_configs_do_not_import_the_training_stack():
    code = (
        "import sys\nfrom prerl_trl.cli import main\n"
        "for argv in (['--help'], ['--version'], ['configs'], ['configs', '--recipe', 'dsrl_qwen3_4b_math']):\n"
        "    assert main(argv) == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_lazy_public_names_still_import():
    import prerl_trl

    assert {"DSRLConfig", "DSRLTrainer", "PreRLConfig", "PreRLTrainer", "math_accuracy_reward"} <= set(dir(prerl_trl))
    assert prerl_trl.DSRLTrainer is DSRLTrainer
    with pytest.raises(AttributeError):
        prerl_trl.NoSuchName  # noqa: B018


def test_configs_into_a_closed_pipe_is_quiet():
    reader, writer = os.pipe()
    os.close(reader)  # the reader has left before the first line (as `head -1` does after its line)
    done = subprocess.run([sys.executable, "-m", "prerl_trl", "configs"], stdout=writer, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(writer)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize("spelling", ["--problem-field", "--problem_field", "--problem-column"])
def test_grad_align_takes_the_train_spelling_of_the_column_flags(tiny_model_dir, tmp_path, spelling):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"q": "1+2=", "gold": "3"}, {"q": "2+2=", "gold": "4"}])
    answer = spelling.replace("problem", "answer")
    assert main(["grad-align", "--model", tiny_model_dir, "--dataset", str(data), "--num-samples", "2",
                 "--max-tokens", "4", "--output-dir", str(tmp_path / "align"), "--no-progress",
                 spelling, "q", answer, "gold"]) == 0
