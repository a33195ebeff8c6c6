"""How `prerl-trl train` resumes a run in its output_dir: a finished run is not trained again, a run of another base
model or trainer is not resumed, and `--resume false` starts over.

Each checkpoint carries `prerl_run.json` (the base model and the trainer that wrote it); a run that completed also
leaves one in output_dir itself, with the step it finished at. A run is finished only when it reached its last
optimizer step (`max_steps`, or the end of its epochs): a run stopped by SIGTERM (transformers' JIT checkpoint) is
resumed by the same command. Resume uses the newest *complete* checkpoint, and skips, naming them, those that a kill
left half-written. One run at a time holds an output_dir (`OutputDirLock`), and a base model's folder is never one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

RUN_FILE = "prerl_run.json"
LOCK_FILE = "_prerl_train.lock"  # a leading "_": Trainer.push_to_hub does not upload it
#: What transformers' JIT checkpoint (`--enable_jit_checkpoint`) leaves in a checkpoint until its save completes.
JIT_SENTINEL = "checkpoint-is-incomplete.txt"
#: `prerl-trl train`'s exit status when it stopped before its end (SIGTERM): 128 + 15, as a shell reports a SIGTERM.
PREEMPTED_EXIT = 143
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_WEIGHTS = re.compile(r"^(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)$")


@dataclass(frozen=True)
class RunIdentity:
    """What a run trains: its base model (an absolute path when local) and trainer."""

    model: str
    trainer: str

    @classmethod
    def of(cls, model: str, trainer: str) -> RunIdentity:
        return cls(os.path.abspath(model) if os.path.isdir(model) else model, trainer)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "trainer": self.trainer}


@dataclass(frozen=True)
class ResumePlan:
    """`checkpoint` to resume from (None: train from the start); `finished`: the run already reached its end."""

    checkpoint: str | None
    finished: bool = False
    message: str | None = None


class RecordRunIdentity(TrainerCallback):
    """Write `prerl_run.json` into every checkpoint the run saves, the JIT checkpoint of a SIGTERM included.

    Transformers calls `on_save` after a scheduled save only; its JIT checkpoint saves from the step callbacks and
    then stops training. Added after the JIT callback, this one marks that checkpoint in the same callback."""

    def __init__(self, identity: RunIdentity) -> None:
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                _write(os.path.join(folder, RUN_FILE), self.identity.as_dict())

    def _after_jit_checkpoint(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        saved = os.path.isfile(os.path.join(folder, TRAINER_STATE_NAME)) and not os.path.exists(
            os.path.join(folder, JIT_SENTINEL))
        if control.should_training_stop and state.is_world_process_zero and saved:
            if not os.path.exists(os.path.join(folder, RUN_FILE)):
                _write(os.path.join(folder, RUN_FILE), self.identity.as_dict())

    on_step_begin = on_pre_optimizer_step = on_step_end = on_epoch_end = _after_jit_checkpoint


def checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders of output_dir, by step."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found) if os.path.isdir(os.path.join(output_dir, name))]


def missing_files(folder: str, state_files: tuple[str, ...] = (), optimizer: bool = True) -> list[str]:
    """What a checkpoint lacks to be resumed from: its weights, optimizer and scheduler (unless `optimizer` is False,
    as with `save_only_model`), trainer state and our `state_files`; empty when it is whole.

    Transformers writes the weights, then the optimizer, scheduler and RNG state, then `trainer_state.json`; our state
    files and `prerl_run.json` come after. A kill during a save leaves a prefix of that sequence, so the files that
    are present say how far the save went. DeepSpeed and FSDP keep weights and optimizer in sub-folders."""
    names = set(os.listdir(folder))
    sharded = any(n.startswith(("global_step", "pytorch_model_fsdp", "optimizer_")) for n in names)
    missing = []
    if JIT_SENTINEL in names:
        missing.append(f"a completed save ({JIT_SENTINEL} is still there)")
    weights = [n for n in names if _WEIGHTS.match(n) or n.endswith((".safetensors.index.json", ".bin.index.json"))]
    for index in (n for n in weights if n.endswith(".index.json")):
        try:
            shards = set((_read(os.path.join(folder, index)) or {}).get("weight_map", {}).values())
        except ValueError:  # a truncated index
            shards = {index}
        missing += [f"weight shard {shard}" for shard in sorted(shards - names)]
    if not weights and not sharded:
        missing.append("model weights")
    if optimizer and not sharded:
        missing += [name for name in (OPTIMIZER_NAME, SCHEDULER_NAME) if name not in names]
    # The JSON state files are written last, whole or not at all, except when a kill leaves one empty: that is missing.
    missing += [name for name in (TRAINER_STATE_NAME, *state_files, RUN_FILE)
                if name not in names or os.path.getsize(os.path.join(folder, name)) == 0]
    return missing


def plan_resume(output_dir: str, identity: RunIdentity, *, resume: bool, max_steps: int, num_train_epochs: float,
                state_files: tuple[str, ...] = (), optimizer: bool = True) -> ResumePlan:
    """Decide what `train` does with what output_dir already holds (read-only: safe on every process).

    Resumes from the newest complete checkpoint (`missing_files`); the message names the incomplete ones skipped.
    Raises ValueError, in one line naming both runs and the fix, when that checkpoint or the finished run was
    trained from another base model or with another trainer."""
    if not resume:
        return ResumePlan(None)
    finished = _read(os.path.join(output_dir, RUN_FILE))
    skipped = []
    found = checkpoints(output_dir)
    while found and (missing := missing_files(found[-1], state_files, optimizer)):
        skipped.append(f"{os.path.basename(found.pop())} (no {', '.join(missing)})")
    note = f"; skipped the incomplete {', '.join(skipped)}" if skipped else ""
    recorded = _read(os.path.join(found[-1], RUN_FILE)) if found else finished
    if recorded is not None:
        _check_same(output_dir, RunIdentity(recorded.get("model", "?"), recorded.get("trainer", "?")), identity)
    if finished is not None and finished.get("finished"):
        step = int(finished.get("global_step", 0))
        more = max_steps > step if max_steps > 0 else num_train_epochs > float(finished.get("num_train_epochs", 0))
        if not more:
            return ResumePlan(None, finished=True, message=(
                f"{output_dir} holds a finished run ({step} optimizer steps): nothing to train. Raise --max_steps to "
                "train further, or pass --resume false to start over."))
    if not found:
        return ResumePlan(None, message=f"Training from the start{note}" if skipped else None)
    return ResumePlan(found[-1], message=f"Resuming from {found[-1]}{note}")


def start_over(output_dir: str) -> int:
    """`--resume false`: remove the checkpoints and the finished-run record of an earlier run; how many folders."""
    found = checkpoints(output_dir)
    for folder in found:
        shutil.rmtree(folder)
    record = os.path.join(output_dir, RUN_FILE)
    if os.path.exists(record):
        os.remove(record)
    return len(found)


def stopped_early(state: Any) -> bool:
    """Whether training began and stopped before its last optimizer step (`max_steps`, or the last of its epochs), as
    a SIGTERM with `enable_jit_checkpoint` stops it. Such a run is not finished: the same command resumes it."""
    return 0 < state.max_steps and state.global_step < state.max_steps


def record_finished(output_dir: str, identity: RunIdentity, state: Any, num_train_epochs: float) -> None:
    """After training: output_dir holds a finished run of `identity` at `state.global_step`."""
    _write(os.path.join(output_dir, RUN_FILE), {
        **identity.as_dict(), "finished": True, "global_step": state.global_step, "max_steps": state.max_steps,
        "num_train_epochs": num_train_epochs,
    })


def _check_same(output_dir: str, recorded: RunIdentity, wanted: RunIdentity) -> None:
    differs = [f"{name} {getattr(recorded, name)!r} (now {getattr(wanted, name)!r})"
               for name in ("model", "trainer") if getattr(recorded, name) != getattr(wanted, name)]
    if differs:
        raise ValueError(
            f"{output_dir} holds a run of another {' and '.join(d.split()[0] for d in differs)}: "
            f"{'; '.join(differs)}. Use another --output_dir, or --resume false to start over there."
        )


def _read(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        return json.load(f)


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def check_not_a_model_folder(output_dir: str, model: str) -> None:
    """Refuse an output_dir that would overwrite a model that this run did not train: the base model's own folder,
    or a folder holding a model (`config.json`) without a `prerl-trl train` run record in it or its checkpoints."""
    if os.path.isdir(model) and os.path.realpath(output_dir) == os.path.realpath(model):
        raise ValueError(
            f"--output_dir {output_dir} is the base model's own folder (--model_name_or_path {model}): training "
            "would overwrite it. Use another --output_dir."
        )
    ours = os.path.exists(os.path.join(output_dir, RUN_FILE)) or any(
        os.path.exists(os.path.join(folder, RUN_FILE)) for folder in checkpoints(output_dir))
    if os.path.isfile(os.path.join(output_dir, "config.json")) and not ours:
        raise ValueError(
            f"--output_dir {output_dir} holds a model (config.json) that prerl-trl train did not write: training "
            "would overwrite it. Use another --output_dir."
        )


class OutputDirLock:
    """One run at a time in an output_dir: an exclusive `flock` on `output_dir/_prerl_train.lock`, held while the run
    lasts. The kernel drops it when its process dies, so a lock left by a killed run never blocks the next one. The
    file records the holder (pid, host, start) for the refusal message; where the file system has no `flock`, that
    record is the lock, and a holder whose pid is gone from this host is taken as stale."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._refuse(self._holder())
        except OSError as error:  # no flock here (some network file systems): the record is the lock
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                os.close(fd)
                raise
            holder = self._holder()
            if holder and _alive(holder):
                os.close(fd)
                self._refuse(holder)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still held, so that no other run ever locks the removed file
                if not os.listdir(self.output_dir):
                    os.rmdir(self.output_dir)  # a run that stopped before writing anything leaves nothing
            os.close(self._fd)
            self._fd = None

    def _holder(self) -> dict[str, Any] | None:
        try:
            return _read(self.path) or None
        except ValueError:
            return None

    def _refuse(self, holder: dict[str, Any] | None) -> None:
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}" if holder
               else "another process")
        raise RuntimeError(
            f"--output_dir {self.output_dir} is in use by another prerl-trl train ({who}): two runs would mix their "
            "checkpoints. Wait for it to end, or use another --output_dir."
        )


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder may still run: on another host we cannot tell, so yes."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        pid = int(holder.get("pid", 0))
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@contextlib.contextmanager
def output_dir_lock(output_dir: str, enabled: bool = True) -> Iterator[None]:
    """Hold `OutputDirLock(output_dir)` for the block (on the main process: `enabled`)."""
    lock = OutputDirLock(output_dir)
    if enabled:
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
