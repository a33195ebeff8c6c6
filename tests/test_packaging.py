"""The source distribution: what it ships and its metadata (version single-sourced from prerl_trl.__version__)."""

from __future__ import annotations

import email
import shutil
import tarfile
from pathlib import Path

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
