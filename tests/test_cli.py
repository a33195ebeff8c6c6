"""The `prerl-trl` command line: recipes parse, `train` runs and resumes, `demo` runs, bad input fails clearly."""

from __future__ import annotations

import json
import re
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
    assert "Training with dsrl on 1 process (cpu)" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert "dsrl" in card and "2604.14142" in card
    assert (out / "checkpoint-2").is_dir()
    capsys.readouterr()
    assert main(["train", *common, "--max_steps", "3"]) == 0
    assert "Resuming from" in capsys.readouterr().out
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    trace = [entry["prerl/active"] for entry in state["log_history"] if "prerl/active" in entry]
    assert trace == [1.0, 0.0, 0.0]


def test_demo_runs_outside_the_checkout_and_reports_held_out_accuracy(tmp_path, capsys, monkeypatch):
    import tempfile

    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir(), scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["demo", "--steps", "4", "--switch-step", "2", "--warmup-steps", "20", "--k", "4"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # the table counts steps as dsrl_switch_step does: the switch message names the first GRPO row
    switch = re.search(r"switching from NSR-PreRL .* at optimizer step (\d+)", captured.out + captured.err)
    table = [line.split() for line in out.splitlines() if re.match(r"^ +\d+  (NSR-PreRL|GRPO) ", line)]
    assert [(int(row[0]), row[1]) for row in table] == [(0, "NSR-PreRL"), (1, "NSR-PreRL"), (2, "GRPO"), (3, "GRPO")]
    assert switch and int(switch.group(1)) == 2
    for column in ("step ", "reward ", "kept ", "log P(y) "):
        assert f"\n  {column}" in out, f"column {column!r} is not explained"
    for section in ("Held-out avg@4 (10 problems", "Trained-on avg@4 (15 problems"):
        block = out[out.index(section) :].split("\n\n")[0]
        labels = re.findall(r"^  (.+?) +\d+\.\d%  \(95% CI +\d+\.\d% to +\d+\.\d%\)$", block, flags=re.M)
        assert labels == ["base model", "after NSR-PreRL (step 2)", "after GRPO (step 4)"]
        assert re.search(r"change, final - base +[+-]\d+\.\d points \(95% CI", block)
    assert "On held-out problems, " in out and "What it does not show" in out
    assert list(cwd.iterdir()) == [], "the demo must not write into the current directory by default"
    saved = Path(re.search(r"to (\S+) \(\d+ s\)", out).group(1))
    assert saved.parent == scratch
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
        assert (saved / name).is_file()


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


def test_train_passes_fields_and_system_prompt_to_the_loader(tmp_path, monkeypatch):
    import prerl_trl.data

    calls = []

    def fake_loader(name, **kwargs):
        calls.append((name, kwargs))
        raise RuntimeError("stop here")

    monkeypatch.setattr(prerl_trl.data, "load_math_dataset", fake_loader)
    common = ["train", "--model_name_or_path", str(tmp_path), "--dataset_name", "mine.jsonl", *CPU]
    fields = ["--problem_field", "q", "--answer_field", "gold", "--solution_field", "sol"]
    assert main([*common, *fields, "--system_prompt", ""]) == 1
    assert main([*common, "--system_prompt", "Be brief."]) == 1
    assert main(common) == 1
    (name, first), (_, second), (_, third) = calls
    assert name == "mine.jsonl"
    assert (first["problem_field"], first["answer_field"], first["solution_field"]) == ("q", "gold", "sol")
    assert first["system_prompt"] is None  # '' drops it
    assert second["system_prompt"] == "Be brief." and second["problem_field"] is None
    assert third["system_prompt"] == prerl_trl.data.SYSTEM_PROMPT


def test_one_recipe_runs_the_method_and_its_grpo_baseline(tmp_path, capsys):
    from trl import GRPOConfig

    recipe = tmp_path / "dsrl.yaml"
    recipe.write_text(
        "trainer: dsrl\nmodel_name_or_path: some/model\ndsrl_switch_step: 5\nprerl_loss_coef: 0.02\n"
        "rl_sample_filter: all\nlearning_rate: 3.0e-6\n"
    )
    _, args, _ = parse_train_args(["--config", str(recipe), "--trainer", "grpo", *CPU])
    assert type(args) is GRPOConfig and args.learning_rate == 3.0e-6
    err = capsys.readouterr().err
    assert "trainer=grpo ignores" in err
    assert all(key in err for key in ("dsrl_switch_step", "prerl_loss_coef", "rl_sample_filter"))
    # PreRL keeps its own keys and drops only DSRL's
    _, args, _ = parse_train_args(["--config", str(recipe), "--trainer", "prerl", *CPU])
    assert type(args) is PreRLConfig and args.prerl_loss_coef == 0.02
    err = capsys.readouterr().err
    assert "dsrl_switch_step" in err and "prerl_loss_coef" not in err
    # asked for explicitly on the command line: an error that says why
    assert main(["train", "--trainer", "grpo", "--dsrl_switch_step", "5", "--model_name_or_path", "x", *CPU]) == 1
    err = capsys.readouterr().err
    assert "--dsrl_switch_step: not an option of --trainer grpo" in err and err.count("\n") == 1
    # a misspelt key is not silently dropped
    recipe.write_text("trainer: dsrl\nmodel_name_or_path: x\nlearning_rat: 1.0e-6\n")
    assert main(["train", "--config", str(recipe), *CPU]) == 1
    assert "learning_rat" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["./nomodel", "/no/such/dir", "a/b/c"])
def test_train_missing_model_directory_is_one_line(model, capsys):
    assert main(["train", "--model_name_or_path", model, *CPU]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such local directory" in err and repr(model) in err


def test_grad_align_no_progress_shows_no_bar_and_takes_column_names(tiny_model_dir, tmp_path, capfd):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"q": "1+2=", "gold": "3"}, {"q": "2+2=", "gold": "4"}])
    args = ["grad-align", "--model", tiny_model_dir, "--dataset", str(data), "--num-samples", "2",
            "--max-tokens", "4", "--output-dir", str(tmp_path / "align"), "--no-progress"]
    assert main([*args, "--problem-column", "q", "--answer-column", "gold"]) == 0
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err and "it/s]" not in captured.err and "examples/s]" not in captured.err
    assert (tmp_path / "align" / "summary.json").is_file()


def test_readme_cpu_training_snippet_runs(tmp_path, monkeypatch):
    """The README's CPU variant of "Train in a few lines" runs as written (fewer warm-up steps, for time)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    snippet = next(block for block in blocks if "use_cpu=True" in block)
    assert "warmup_steps=230" in snippet
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet.replace("warmup_steps=230", "warmup_steps=5"), "README.md", "exec"), namespace)
    assert namespace["trainer"].state.global_step == 4


def test_toy_split_holds_problems_out():
    from prerl_trl.tiny import toy_split

    train, held = toy_split(10, seed=3)
    assert len(held) == 10 and len(train) == 15
    assert sorted(train + held) == sorted(toy_problems()) and not set(train) & set(held)
    assert toy_split(10, seed=3) == (train, held) and toy_split(10, seed=4) != (train, held)
    with pytest.raises(ValueError, match="held_out"):
        toy_split(25)


def test_demo_table_counts_steps_as_dsrl_switch_step_does():
    """TRL logs the step after the update (1-based); the table shows the step at which it ran (0-based), so that with
    dsrl_switch_step=2 the first GRPO row is step 2, as the switch message says."""
    from prerl_trl.demo import step_table

    log = [{"step": s, "prerl/active": float(s <= 2), "reward": 0.25 * s, "prerl/kept_frac": 0.5} for s in (1, 2, 3)]
    log[0]["prerl/marginal_logp"] = -1.25
    log.append({"step": 3, "train_loss": 0.1})  # the final summary entry is not a step row
    rows = [line.split() for line in step_table(log)[1:]]
    assert rows == [["0", "NSR-PreRL", "0.250", "0.500", "-1.250"], ["1", "NSR-PreRL", "0.500", "0.500", "-"],
                    ["2", "GRPO", "0.750", "0.500", "-"]]
