"""The `prerl-trl` command line: recipes parse, `train` runs and resumes, `demo` runs, bad input fails clearly."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from prerl_trl import DSRLConfig, PreRLConfig
from prerl_trl.cli import main, parse_train_args
from prerl_trl.tiny import toy_problems

CPU = ["--bf16", "false", "--use_cpu", "true"]
RECIPES = sorted(p.name for p in (resources.files("prerl_trl") / "recipes").iterdir() if p.name.endswith(".yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_parses(recipe):
    path = str(resources.files("prerl_trl") / "recipes" / recipe)
    raw = yaml.safe_load(Path(path).read_text())
    script_args, training_args, model_args = parse_train_args(["--config", path, *CPU])
    assert script_args.trainer == raw["trainer"]
    assert model_args.model_name_or_path == raw["model_name_or_path"]
    expected_class = {"dsrl": DSRLConfig, "prerl": PreRLConfig}.get(raw["trainer"])
    if expected_class is not None:
        assert type(training_args) is expected_class
    for key in ("learning_rate", "num_generations", "max_completion_length", "dsrl_switch_step", "prerl_loss_coef"):
        if key in raw:
            assert getattr(training_args, key) == raw[key]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_train_runs_saves_and_resumes(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "toy.jsonl", [{"problem": q, "answer": a} for q, a in toy_problems()])
    out = tmp_path / "run"
    common = [
        "--model_name_or_path", tiny_model_dir, "--dataset_name", str(data), "--output_dir", str(out),
        "--trainer", "dsrl", "--dsrl_switch_step", "1", "--per_device_train_batch_size", "8",
        "--num_generations", "4", "--max_completion_length", "6", "--logging_steps", "1", "--report_to", "none",
        "--save_strategy", "steps", "--save_steps", "1", *CPU,
    ]
    assert main(["train", *common, "--max_steps", "2"]) == 0
    card = (out / "README.md").read_text()
    assert "dsrl" in card and "2604.14142" in card
    assert (out / "checkpoint-2").is_dir()
    capsys.readouterr()
    assert main(["train", *common, "--max_steps", "3"]) == 0
    assert "Resuming from" in capsys.readouterr().out
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    trace = [entry["prerl/active"] for entry in state["log_history"] if "prerl/active" in entry]
    assert trace == [1.0, 0.0, 0.0]


def test_demo_runs_and_shows_the_switch(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), "--steps", "4", "--switch-step", "2"]) == 0
    captured = capsys.readouterr()
    assert "switching from NSR-PreRL" in captured.out + captured.err
    table = [line.split() for line in captured.out.splitlines() if line[:4].strip().isdigit()]
    assert [row[1] for row in table] == ["NSR-PreRL", "NSR-PreRL", "GRPO", "GRPO"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
        assert (out / name).is_file()


def test_bad_input_is_reported(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("trainer: ppo\nmodel_name_or_path: x\n")
    assert main(["train", "--config", str(recipe)]) == 1
    assert "trainer='ppo'" in capsys.readouterr().err
    assert main(["train", "--dsrl_switch_step", "-3", "--model_name_or_path", "x", *CPU]) == 1
    assert "dsrl_switch_step" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--steps", "0"])


def test_configs_lists_bundled_files(capsys):
    assert main(["configs", "--accelerate", "zero3"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.is_file() and yaml.safe_load(path.read_text())["deepspeed_config"]["zero_stage"] == 3
    assert main(["configs", "--recipe", "missing"]) == 2
