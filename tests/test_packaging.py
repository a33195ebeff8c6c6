"""The source distribution: what it ships and its metadata (version single-sourced from prerl_trl.__version__)."""

from __future__ import annotations

import email
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import prerl_trl

ROOT = Path(__file__).resolve().parents[1]


def test_sdist_ships_what_the_tests_need(tmp_path, monkeypatch):
    from setuptools import build_meta

    # Build from a copy, so that the egg-info folder is not written into the checkout.
    src = tmp_path / "src_tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("src", "tests", "benchmarks", "examples", "notebooks"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    monkeypatch.chdir(src)
    name = build_meta.build_sdist(str(tmp_path / "dist"))
    with tarfile.open(tmp_path / "dist" / name) as tar:
        top = name.removesuffix(".tar.gz")
        files = {member.name.removeprefix(top + "/") for member in tar.getmembers() if member.isfile()}
        metadata = email.message_from_bytes(tar.extractfile(f"{top}/PKG-INFO").read())

    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*") if p.is_file() and "__pycache__" not in
                p.parts}
    assert {"tests/conftest.py", "tests/scripts/dist_train.py", "tests/data/gsm8k.jsonl"} <= expected
    assert expected <= files, f"missing from the sdist: {sorted(expected - files)}"
    assert "src/prerl_trl/recipes/dsrl_qwen3_4b_math.yaml" in files and "CHANGELOG.md" in files
    assert {"examples/slurm_multi_node.sbatch", "notebooks/quickstart.ipynb"} <= files  # tests read them
    assert not any("__pycache__" in f for f in files)

    assert metadata["Version"] == prerl_trl.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert any(req.startswith("matplotlib") for req in metadata.get_all("Requires-Dist"))  # eval's plot


# Files git ignores that a working checkout holds: run scratch, trained models, test outputs.
IGNORED_SAMPLES = (
    "benchmarks/miniature/.cache/grpo-1/model.safetensors",
    "benchmarks/real_model/.cache/dsrl-1/checkpoint-2/optimizer.pt",
    "tests/outputs/run/config.json",
    "examples/outputs/trainer_state.json",
    "notebooks/outputs/model.safetensors",
    "benchmarks/results/__pycache__/x.cpython-311.pyc",
)


def test_sdist_ships_only_what_git_tracks(tmp_path, monkeypatch):
    from setuptools import build_meta

    try:
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing to compare the sdist with")
    tracked_files = set(tracked.stdout.splitlines())
    src = tmp_path / "src_tree"
    for name in tracked_files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    for name in IGNORED_SAMPLES:  # what a checkout that has run the tests and benchmarks also holds
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("ignored")
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *IGNORED_SAMPLES],
                             capture_output=True, text=True)
    assert set(ignored.stdout.split()) == set(IGNORED_SAMPLES), "every sample must be a path .gitignore ignores"
    monkeypatch.chdir(src)
    name = build_meta.build_sdist(str(tmp_path / "dist"))
    top = name.removesuffix(".tar.gz")
    with tarfile.open(tmp_path / "dist" / name) as tar:
        files = {m.name.removeprefix(top + "/") for m in tar.getmembers() if m.isfile()}
    generated = {f for f in files if f in ("PKG-INFO", "setup.cfg") or ".egg-info/" in f}
    assert files - generated <= tracked_files, f"untracked files in the sdist: {sorted(files - generated - tracked_files)}"
    shipped_folders = ("tests/", "benchmarks/", "examples/", "notebooks/", "src/")
    expected = {f for f in tracked_files if f.startswith(shipped_folders)}
    assert expected <= files, f"tracked files missing from the sdist: {sorted(expected - files)}"
