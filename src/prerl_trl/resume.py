"""How `prerl-trl train` resumes a run in its output_dir: a finished run is not trained again, a run of another base
model or trainer is not resumed, and `--resume false` starts over.

Each checkpoint carries `prerl_run.json` (the base model and the trainer that wrote it); a run that completed also
leaves one in output_dir itself, with the step it finished at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

RUN_FILE = "prerl_run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


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
    """Write `prerl_run.json` into every checkpoint the run saves."""

    def __init__(self, identity: RunIdentity) -> None:
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                _write(os.path.join(folder, RUN_FILE), self.identity.as_dict())


def checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders of output_dir, by step."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found) if os.path.isdir(os.path.join(output_dir, name))]


def plan_resume(output_dir: str, identity: RunIdentity, *, resume: bool, max_steps: int, num_train_epochs: float) -> ResumePlan:
    """Decide what `train` does with what output_dir already holds (read-only: safe on every process).

    Raises ValueError, in one line naming both runs and the fix, when the last checkpoint or the finished run was
    trained from another base model or with another trainer."""
    if not resume:
        return ResumePlan(None)
    finished = _read(os.path.join(output_dir, RUN_FILE))
    found = checkpoints(output_dir)
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
        return ResumePlan(None)
    return ResumePlan(found[-1], message=f"Resuming from {found[-1]}")


def start_over(output_dir: str) -> int:
    """`--resume false`: remove the checkpoints and the finished-run record of an earlier run; how many folders."""
    found = checkpoints(output_dir)
    for folder in found:
        shutil.rmtree(folder)
    record = os.path.join(output_dir, RUN_FILE)
    if os.path.exists(record):
        os.remove(record)
    return len(found)


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
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
