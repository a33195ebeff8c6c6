"""The generation cache (`generations.jsonl`) and the settings, model fingerprint included, that decide whether it can
be reused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .defaults import CACHE_FILE, CACHE_KEY_SETTINGS, SETTINGS_FILE, EvaluationError


def prompt_hash(prompt: str) -> str:
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


Key = tuple[str, int, int]  # (dataset, problem index, sample index)


class GenerationCache:
    """An append-only JSONL of generations keyed by (dataset, problem index, sample index).

    Each line: `{"dataset", "index", "sample", "prompt_hash", "prompt", "completion", "num_tokens",
    "finish_reason"}`. Lines are flushed (and fsynced) after every batch; a line cut short by a crash is skipped.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        self.skipped_lines = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        key = (str(rec["dataset"]), int(rec["index"]), int(rec["sample"]))
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        self.skipped_lines += 1
                        continue
                    self.records.setdefault(key, rec)
        if self.skipped_lines:
            warnings.warn(f"{self.path}: skipped {self.skipped_lines} unreadable line(s) (an interrupted write?)",
                          stacklevel=2)

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        with open(self.path, "a", encoding="utf-8") as f:
            if needs_newline:
                f.write("\n")
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())
        for rec in records:
            self.records.setdefault((str(rec["dataset"]), int(rec["index"]), int(rec["sample"])), rec)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


@dataclass
class WorkItem:
    """One sample to generate."""

    key: Key
    prompt: str
    prompt_ids: list[int]


def _same_setting(key: str, old: Any, new: Any) -> bool:
    if key == "model" and isinstance(old, str) and isinstance(new, str):  # `runs/ckpt/` is `runs/ckpt`
        return os.path.normpath(old) == os.path.normpath(new)
    return old == new


# What a model *is*, for the fingerprint: its config and the files that hold its weights (full or adapter).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
FINGERPRINT_FILES = ("config.json", "adapter_config.json", "generation_config.json")


def model_fingerprint(model: str) -> str:
    """A short hash of what the model in `model` is, so that a model changed in place (trained further, overwritten)
    is not scored from generations of the old one.

    A local directory: the text of its config files, and each weights file's name, size and modification time
    (hashing gigabytes of weights would cost more than it saves). A Hub id: the id itself."""
    path = Path(model).expanduser()
    digest = hashlib.sha1()
    if not path.is_dir():
        digest.update(f"hub:{model}".encode())
        return digest.hexdigest()[:16]
    for name in FINGERPRINT_FILES:
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes() + b"\0")
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def check_settings(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Record `settings` (and the model's fingerprint) in output_dir. When output_dir already holds generations made
    with other cache-key settings, or from a model that has changed since, stop with one line that says so."""
    path = output_dir / SETTINGS_FILE
    cache = output_dir / CACHE_FILE
    settings = {**settings, "model_fingerprint": model_fingerprint(str(settings["model"]))}
    if overwrite:
        for p in (path, cache):
            if p.exists():
                p.unlink()
    if path.exists() and cache.exists():
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        diff = {k: (old.get(k), settings[k]) for k in CACHE_KEY_SETTINGS if not _same_setting(k, old.get(k), settings[k])}
        if diff:
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise EvaluationError(
                f"{output_dir} holds generations made with other settings ({changes}). Use another --output-dir, "
                "or --overwrite to discard them."
            )
        if old.get("model_fingerprint") != settings["model_fingerprint"]:
            raise EvaluationError(
                f"the model in {settings['model']} has changed since {output_dir} cached its generations (its weights "
                "or config differ, or the cache predates model fingerprints): pass --overwrite to generate again, "
                "or use another --output-dir."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
