"""The source distribution: what it ships and its metadata (version single-sourced from prerl_trl.__version__).

The sdist is built once per module, in-process with setuptools, from a copy of the checkout: in a git checkout the
copy holds the git-tracked files plus one planted file for every pattern of .gitignore, in each folder MANIFEST.in
grafts (the sdist must ship the first and none of the second); elsewhere (an unpacked sdist) the copy is the tree.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import prerl_trl

ROOT = Path(__file__).resolve().parents[1]
TOP_FILES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in")


def _grafted_folders() -> list[str]:
    lines = (ROOT / "MANIFEST.in").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("graft ")]


def _git(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, check=True)


def _tracked_files() -> list[str] | None:
    """The files git tracks (and the working tree still has), or None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    try:
        listed = _git("ls-files", "-z").stdout
    except subprocess.CalledProcessError:
        return None
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _ignored_plants(tracked: set[str]) -> dict[str, list[str]]:
    """For each pattern of .gitignore, files that git ignores because of it: at the top, in each grafted folder and
    one level below (unanchored patterns match at any depth), or the anchored path itself. Patterns come from the
    file, so a pattern added there is checked without editing this test."""
    bases = ["", *[f"{folder}/" for folder in _grafted_folders()], *[f"{folder}/sub/" for folder in _grafted_folders()]]
    plants: dict[str, list[str]] = {}
    for raw in (ROOT / ".gitignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith(("#", "!")):
            continue
        name = pattern.strip("/").replace("**/", "").replace("*", "x").replace("?", "x")
        anchored = "/" in pattern.rstrip("/")
        paths = [name] if anchored else [base + name for base in bases]
        if pattern.endswith("/"):
            paths = [f"{path}/planted/model.safetensors" for path in paths]
        plants[pattern] = [path for path in paths if path not in tracked]
    # Keep the paths git really ignores, and say which pattern this expansion could not produce a file for.
    candidates = sorted({path for paths in plants.values() for path in paths})
    checked = _git("check-ignore", "--no-index", "--stdin", "-z", stdin="\0".join(candidates) + "\0").stdout
    ignored = set(checked.split("\0")) - {""}
    plants = {pattern: [path for path in paths if path in ignored] for pattern, paths in plants.items()}
    assert all(plants.values()), f"no ignored file planted for: {[p for p, paths in plants.items() if not paths]}"
    return plants


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """(files in the sdist, its PKG-INFO, the tracked files or None, the planted git-ignored files by pattern)."""
    from setuptools import build_meta

    tmp = tmp_path_factory.mktemp("sdist")
    src = tmp / "src_tree"  # built from a copy, so that the egg-info folder is not written into the checkout
    tracked = _tracked_files()
    plants: dict[str, list[str]] = {}
    if tracked is None:
        src.mkdir()
        for name in TOP_FILES:
            shutil.copy(ROOT / name, src / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
        for folder in ("src", *_grafted_folders()):
            shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    else:
        for name in tracked:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
        plants = _ignored_plants(set(tracked))
        for path in {path for paths in plants.values() for path in paths}:
            (src / path).parent.mkdir(parents=True, exist_ok=True)
            (src / path).write_text("git-ignored: must not ship\n")
    cwd = os.getcwd()
    os.chdir(src)
    try:
        name = build_meta.build_sdist(str(tmp / "dist"))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp / "dist" / name) as tar:
        top = name.removesuffix(".tar.gz")
        files = {member.name.removeprefix(top + "/") for member in tar.getmembers() if member.isfile()}
        metadata = email.message_from_bytes(tar.extractfile(f"{top}/PKG-INFO").read())
    return files, metadata, tracked, plants


def test_sdist_ships_what_the_tests_need(sdist):
    files, metadata, tracked, _ = sdist
    if tracked is not None:
        expected = {name for name in tracked if name.startswith("tests/")}
    else:
        expected = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*") if p.is_file() and "__pycache__"
                    not in p.parts}
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


def test_sdist_ships_what_git_tracks_in_the_grafted_folders(sdist):
    """`graft benchmarks` once shipped benchmarks/miniature/.cache/*/model.safetensors, `graft tests` tests/outputs/:
    a grafted folder ships its git-tracked files and nothing git ignores."""
    files, _, tracked, plants = sdist
    if tracked is None:
        pytest.skip("not a git checkout (an unpacked sdist?): nothing to compare with")
    planted = {path for paths in plants.values() for path in paths}
    assert {"benchmarks/miniature/.cache/planted/model.safetensors", "tests/outputs/planted/model.safetensors"} <= planted
    shipped = {pattern: sorted(set(paths) & files)[:2] for pattern, paths in plants.items() if set(paths) & files}
    assert not shipped, f"git-ignored files in the sdist (.gitignore pattern: first files; prune it in MANIFEST.in): {shipped}"
    grafted = tuple(f"{folder}/" for folder in (*_grafted_folders(), "src"))
    expected = {name for name in tracked if name.startswith(grafted) and not name.endswith((".pyc", ".pyo", ".pyd"))}
    assert expected <= files, f"git-tracked files missing from the sdist: {sorted(expected - files)}"
    # The prune lines leave the sdist's own metadata alone (a `prune **/*.egg-info` would take it).
    assert {"src/prerl_trl.egg-info/PKG-INFO", "src/prerl_trl.egg-info/requires.txt"} <= files
