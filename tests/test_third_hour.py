"""The third hour: preemption, half-written checkpoints, shared output folders, and the inputs a real dataset brings.
Each test reproduces one defect of issue 25 through `prerl-trl train` (or the function it names) on a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_second_hour import checkpoint_steps, one_line, train_args, write_jsonl

from prerl_trl import resume as runs
from prerl_trl.cli import main
from prerl_trl.tiny import toy_problems

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def toy_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "toy.jsonl", [{"problem": q, "answer": a} for q, a in toy_problems()])


def finished_record(out: Path) -> dict | None:
    path = out / runs.RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------------------------------
# Preemption
def test_a_sigterm_saves_a_jit_checkpoint_and_the_same_command_resumes(tiny_model_dir, toy_file, tmp_path):
    """A real SIGTERM to a training subprocess, as SLURM sends before a requeue: the run is not marked finished, and
    the rerun of the same command resumes from the JIT checkpoint instead of answering "nothing to train"."""
    out = tmp_path / "run"
    command = train_args(tiny_model_dir, toy_file, out, "--max_steps", "10000", "--save_steps", "10000",
                         "--enable_jit_checkpoint", "true", "--dsrl_switch_step", "1")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "prerl_trl", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    guard = threading.Timer(300, process.kill)  # a hang guard only: a silent process never blocks the read for ever
    guard.start()
    for line in process.stdout:
        seen.append(line)
        if "'loss'" in line:  # the first optimizer step is logged: training runs
            break
    guard.cancel()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=300)
    log = "".join(seen) + rest
    assert process.returncode == runs.PREEMPTED_EXIT, log
    assert "not finished" in log and "Model saved" not in log
    steps = checkpoint_steps(out)
    assert len(steps) == 1 and 0 < steps[0] < 10000, log  # the JIT checkpoint, at the step the signal stopped
    jit = out / f"checkpoint-{steps[0]}"
    assert runs.missing_files(str(jit), ("dsrl_state.json",)) == []
    assert json.loads((jit / runs.RUN_FILE).read_text())["trainer"] == "dsrl"
    assert finished_record(out) is None and not (out / "model.safetensors").exists()
    assert not (out / runs.LOCK_FILE).exists()
    # the requeued command (a shorter run here, to end soon) resumes from it and finishes
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", str(steps[0] + 1), "--save_steps", "10000",
                           "--dsrl_switch_step", "1")) == 0
    state = json.loads((out / f"checkpoint-{steps[0] + 1}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps[0] + 1 and len(state["log_history"]) >= 2
    assert finished_record(out)["finished"] and finished_record(out)["global_step"] == steps[0] + 1


def test_a_run_is_finished_only_at_its_last_step():
    class State:
        def __init__(self, global_step, max_steps):
            self.global_step, self.max_steps = global_step, max_steps

    assert runs.stopped_early(State(72, 1000)) and runs.stopped_early(State(0, 5))
    assert not runs.stopped_early(State(10, 10)) and not runs.stopped_early(State(12, 10))
    assert not runs.stopped_early(State(0, 0))  # the training loop never ran (max_steps is set when it starts)


# ---------------------------------------------------------------------------------------------------------------------
# Half-written checkpoints
def _keep_only(folder: Path, names: set[str]) -> None:
    for path in folder.iterdir():
        if path.name not in names:
            path.unlink()


def test_resume_skips_half_written_checkpoints_and_names_them(tiny_model_dir, toy_file, tmp_path, capsys):
    """A kill -9 during a save leaves a prefix of what transformers writes (weights, optimizer, scheduler, RNG, trainer
    state), then our dsrl_state.json and prerl_run.json: truncate two checkpoints the way a kill at two points would."""
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "2", "--dsrl_switch_step", "1")) == 0
    (out / runs.RUN_FILE).unlink()  # as if it had died before the end
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")  # the save of step 3...
    _keep_only(out / "checkpoint-3", {"config.json", "generation_config.json"})  # ...killed while writing the weights
    (out / "checkpoint-2" / "dsrl_state.json").unlink()  # killed after the trainer state, before our state file
    (out / "checkpoint-2" / runs.RUN_FILE).unlink()
    capsys.readouterr()
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "3", "--dsrl_switch_step", "1")) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "Resuming from" in line)
    assert line.startswith(f"Resuming from {out / 'checkpoint-1'};")
    assert "checkpoint-3 (no model weights, optimizer.pt" in line and "checkpoint-2 (no dsrl_state.json" in line
    for step in (2, 3):  # trained again from checkpoint-1, and saved whole this time
        state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
        assert state["global_step"] == step
        assert runs.missing_files(str(out / f"checkpoint-{step}"), ("dsrl_state.json",)) == []
    # the card counts the whole run's 3 steps: step 0 in NSR-PreRL (dsrl_switch_step=1), 2 in GRPO, 1 before the resume
    card = (out / "README.md").read_text()
    assert "| optimizer steps run | 1 in pre-train space, 2 in GRPO (1 of them before resuming) |" in card


def test_a_checkpoint_is_whole_only_with_every_file(tmp_path):
    folder = tmp_path / "checkpoint-7"
    folder.mkdir()
    whole = ["model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", runs.RUN_FILE]
    for name in whole:
        (folder / name).write_text("{}")
    assert runs.missing_files(str(folder)) == []
    assert runs.missing_files(str(folder), ("dsrl_state.json",)) == ["dsrl_state.json"]
    (folder / runs.RUN_FILE).write_text("")  # emptied by a kill during its write
    assert runs.missing_files(str(folder)) == [runs.RUN_FILE]
    (folder / runs.RUN_FILE).write_text("{}")
    (folder / runs.JIT_SENTINEL).write_text("in progress")
    assert len(runs.missing_files(str(folder))) == 1
    (folder / runs.JIT_SENTINEL).unlink()
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002"
                                                                                     ".safetensors"}}))
    assert runs.missing_files(str(folder)) == ["weight shard model-00001-of-00002.safetensors"]
    (folder / "optimizer.pt").unlink()
    assert "optimizer.pt" not in runs.missing_files(str(folder), optimizer=False)


# ---------------------------------------------------------------------------------------------------------------------
# One run per output folder
def test_a_second_run_into_a_held_output_dir_is_refused(tiny_model_dir, toy_file, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from prerl_trl.resume import OutputDirLock; "
        "OutputDirLock(sys.argv[2]).acquire(); print('held', flush=True); time.sleep(120)"), SRC, str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "1")) == 1
        line = one_line(capsys.readouterr().err)
        assert f"pid {holder.pid}" in line and "--output_dir" in line and "in use" in line
        assert checkpoint_steps(out) == []
    finally:
        holder.kill()
        holder.wait(timeout=60)
    # the holder died (kill -9): its lock goes with it, and the next run takes it
    lock = runs.OutputDirLock(str(out))
    lock.acquire()
    assert json.loads((out / runs.LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not out.exists()  # a folder that held only the lock is left as it was found


def test_a_stale_lock_record_without_flock_is_taken_over(tmp_path, monkeypatch):
    """Where flock is not supported (some network file systems), a record whose pid is dead does not block."""
    import errno
    import fcntl
    import socket

    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    (out / runs.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = runs.OutputDirLock(str(out))
    lock.acquire()
    assert json.loads((out / runs.LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(RuntimeError, match=f"pid {os.getpid()}"):
        runs.OutputDirLock(str(out)).acquire()  # a live holder still blocks
    lock.release()


def test_the_base_model_folder_is_never_the_output_dir(tiny_model_dir, toy_file, tmp_path, capsys):
    before = sorted(os.listdir(tiny_model_dir))
    assert main(train_args(tiny_model_dir, toy_file, Path(tiny_model_dir), "--max_steps", "1")) == 1
    assert "base model's own folder" in one_line(capsys.readouterr().err)
    other = tmp_path / "a_model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    assert main(train_args(tiny_model_dir, toy_file, other, "--max_steps", "1")) == 1
    assert "holds a model (config.json)" in one_line(capsys.readouterr().err)
    assert sorted(os.listdir(tiny_model_dir)) == before and sorted(os.listdir(other)) == ["config.json"]


# ---------------------------------------------------------------------------------------------------------------------
# Inputs a real dataset brings
def test_a_malformed_jsonl_line_is_named_with_its_line_number(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"problem": "1+1", "answer": "2"}\n\n{"problem": "2+2", "answer": 4\n{"problem": "x", "answer": 1}\n')
    assert main(train_args(tiny_model_dir, data, tmp_path / "run", "--max_steps", "1")) == 1
    line = one_line(capsys.readouterr().err)
    assert f"{data}: line 3 is not valid JSON" in line and "fix or remove that line" in line
    assert not (tmp_path / "run").exists()  # nothing left behind, not even the lock


def test_rows_without_a_problem_are_dropped_with_a_count(tmp_path, caplog):
    from prerl_trl.data import load_math_dataset

    rows = [{"problem": p, "answer": "3"} for p in ("1+2", "", None, "   ", "2+1")]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    with caplog.at_level("WARNING", logger="prerl_trl.data"):
        dataset = load_math_dataset(str(data), conversational=False, system_prompt=None)
    assert dataset["prompt"] == ["1+2", "2+1"]
    assert "dropped 3 of 5 rows with an empty or null problem" in caplog.text


def test_a_list_answer_is_the_set_of_its_values(tmp_path):
    from prerl_trl.data import load_math_dataset
    from prerl_trl.rewards import math_accuracy_reward

    data = write_jsonl(tmp_path / "rows.jsonl", [{"problem": "roots?", "answer": [1, 2]},
                                                {"problem": "root?", "answer": [3]}])
    gold = load_math_dataset(str(data))["answer"]
    assert gold == ["1, 2", "3"]
    completions = ["so \\boxed{1, 2}", "so \\boxed{2, 1}", "so \\boxed{1}"]
    assert math_accuracy_reward(completions, answer=[gold[0]] * 3) == [1.0, 1.0, 0.0]


def test_max_train_samples_zero_says_no_rows_are_selected(tiny_model_dir, toy_file, tmp_path, capsys):
    assert main(train_args(tiny_model_dir, toy_file, tmp_path / "run", "--max_train_samples", "0")) == 1
    line = one_line(capsys.readouterr().err)
    assert "max_samples=0" in line and "--max_train_samples" in line and "selects no rows" in line


@pytest.mark.parametrize(("name", "expected"), [
    ("my_rewards.typo", "my_rewards has no function 'typo' (its functions: my_reward)"),
    ("./my_rewards.py", "name the function in the file, as ./my_rewards.py:<function>"),
    ("./nowhere.py:my_reward", "no file './nowhere.py'"),
    ("no_such_module.f", "no module 'no_such_module'"),
])
def test_a_wrong_reward_function_is_one_line(tiny_model_dir, toy_file, tmp_path, capsys, monkeypatch, name, expected):
    (tmp_path / "my_rewards.py").write_text("def my_reward(completions, **kwargs):\n    return [0.5] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    assert main(train_args(tiny_model_dir, toy_file, tmp_path / "run", "--reward_funcs", name)) == 1
    assert expected in one_line(capsys.readouterr().err)


def test_a_reward_function_from_a_file_path_is_loaded(tmp_path, monkeypatch):
    from prerl_trl.cli import _reward_funcs

    (tmp_path / "my_rewards.py").write_text("def my_reward(completions, **kwargs):\n    return [0.5] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    (func,) = _reward_funcs(["./my_rewards.py:my_reward"])
    assert func(["a", "b"]) == [0.5, 0.5]
    # Another file of the same name elsewhere is another module, not the first one again.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "my_rewards.py").write_text("def my_reward(completions, **kwargs):\n    return [1.0] * "
                                                       "len(completions)\n")
    (other,) = _reward_funcs(["./other/my_rewards.py:my_reward"])
    assert other(["a"]) == [1.0] and func(["a"]) == [0.5]


@pytest.mark.parametrize("name", ["prerl_loss_coef", "rl_loss_coef", "w_reinforce_positive_weight"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_coefficient_is_refused(tiny_model_dir, toy_file, tmp_path, capsys, name, value):
    assert main(train_args(tiny_model_dir, toy_file, tmp_path / "run", f"--{name}={value}")) == 1
    line = one_line(capsys.readouterr().err)
    assert f"{name}={value}" in line and "finite" in line and "learning_rate" not in line


def test_the_eval_dataset_takes_the_field_flags_and_long_prompts_are_counted(tiny_model_dir, tmp_path, capsys):
    """One short run: the eval file has the train file's custom columns (its own error message recommends the flags),
    and one training prompt is longer than the tiny model's 256-token context."""
    from transformers import AutoConfig, AutoTokenizer

    from prerl_trl.tiny import toy_problems

    rows = [{"q": q, "a": a} for q, a in toy_problems()]
    long_problem = "Compute " + " + ".join(["1"] * 400)
    train = write_jsonl(tmp_path / "train.jsonl", [*rows, {"q": long_problem, "a": "400"}])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", rows[:4])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    context = AutoConfig.from_pretrained(tiny_model_dir).max_position_embeddings
    assert len(tokenizer(long_problem)["input_ids"]) > context  # independent of the counting code
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, train, out, "--max_steps", "1", "--eval_dataset_name", str(evaluation),
                           "--problem_field", "q", "--answer_field", "a", "--eval_strategy", "no")) == 0
    err = capsys.readouterr().err
    assert f"1 of {len(rows) + 1} training prompts are longer than {context - 6} tokens" in err
    card = (out / "README.md").read_text()
    assert "| dataset | local file `train.jsonl`" in card


def test_a_local_dataset_is_never_named_as_a_hub_dataset(tmp_path):
    from prerl_trl.data import dataset_source

    local = write_jsonl(tmp_path / "mine.jsonl", [{"problem": "1+1", "answer": "2"}])
    assert dataset_source(str(local)) == (None, "local file `mine.jsonl`")
    assert dataset_source("math")[0] == "DigitalLearningGmbH/MATH-lighteval"
    assert dataset_source("org/name") == ("org/name", "`org/name`")


def test_greedy_evaluation_with_several_answers_says_they_are_identical(capsys):
    from prerl_trl.evaluation import EvaluationError, evaluate

    with pytest.raises(EvaluationError):  # stops on the missing dataset list, after the settings are checked
        evaluate("unused-model", [], output_dir=".", n=8, temperature=0.0)
    assert "--temperature 0 is greedy: the 8 answers per problem are identical" in capsys.readouterr().err


def test_the_package_is_typed():
    import prerl_trl

    assert (Path(prerl_trl.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"py.typed"' in pyproject


# ---------------------------------------------------------------------------------------------------------------------
# From a wheel
@pytest.mark.slow
def test_a_built_wheel_trains_from_outside_the_checkout(tiny_model_dir, toy_file, tmp_path, monkeypatch):
    """Build the wheel (setuptools, in-process, from a copy of the tracked tree), unpack it as pip would install a
    pure-Python wheel, and run a one-step `train` from a folder outside the checkout with only the wheel importable."""
    import zipfile

    from setuptools import build_meta

    root = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, tree / name)
    shutil.copytree(root / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with monkeypatch.context() as patch:  # the build backend reads the project from the working directory
        patch.chdir(tree)
        wheel = build_meta.build_wheel(str(tmp_path / "dist"))
    site = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "prerl_trl/py.typed" in names and any(n.startswith("prerl_trl/recipes/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "prerl-trl = prerl_trl.cli:main" in (site / entry_points).read_text()
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = "import prerl_trl, sys; print(prerl_trl.__file__); sys.exit(prerl_trl.cli.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", "import prerl_trl.cli; " + code,
                           *train_args(tiny_model_dir, toy_file, away / "run", "--max_steps", "1")],
                          cwd=away, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[0].startswith(str(site))
    assert (away / "run" / "checkpoint-1" / "trainer_state.json").is_file()
