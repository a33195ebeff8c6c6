"""The third hour: preemption, half-written checkpoints, shared output folders, and the inputs a real dataset brings.
Each test reproduces one defect of issue 25 through `prerl-trl train` (or the function it names) on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    deadline = time.monotonic() + 300  # a hang guard only
    for line in process.stdout:
        seen.append(line)
        if "'loss'" in line or time.monotonic() > deadline:  # the first optimizer step is logged: training runs
            break
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

    assert runs.reached_end(State(10, 10)) and runs.reached_end(State(12, 10))
    assert not runs.reached_end(State(72, 1000)) and not runs.reached_end(State(0, 0))


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
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "4", "--dsrl_switch_step", "1")) == 0
    (out / runs.RUN_FILE).unlink()  # as if it had died before the end
    _keep_only(out / "checkpoint-4", {"config.json", "generation_config.json"})  # killed while saving the weights
    (out / "checkpoint-3" / "dsrl_state.json").unlink()  # killed after the trainer state, before our state file
    (out / "checkpoint-3" / runs.RUN_FILE).unlink()
    capsys.readouterr()
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "5", "--dsrl_switch_step", "1")) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "Resuming from" in line)
    assert line.startswith(f"Resuming from {out / 'checkpoint-2'};")
    assert "checkpoint-4 (no model weights, optimizer.pt" in line and "checkpoint-3 (no dsrl_state.json" in line
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5 and runs.missing_files(str(out / "checkpoint-4"), ("dsrl_state.json",)) == []


def test_a_checkpoint_is_whole_only_with_every_file(tmp_path):
    folder = tmp_path / "checkpoint-7"
    folder.mkdir()
    whole = ["model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", runs.RUN_FILE]
    for name in whole:
        (folder / name).write_text("{}")
    assert runs.missing_files(str(folder)) == []
    assert runs.missing_files(str(folder), ("dsrl_state.json",)) == ["dsrl_state.json"]
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
    # the holder died: its lock goes with it, and the next run trains
    assert main(train_args(tiny_model_dir, toy_file, out, "--max_steps", "1")) == 0
    assert checkpoint_steps(out) == [1] and not (out / runs.LOCK_FILE).exists()


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
