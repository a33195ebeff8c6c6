"""notebooks/: the quickstart runs from top to bottom on the CPU; the GPU notebook is valid and its code compiles."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def code_cells(path: Path) -> list[str]:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return ["".join(cell.source) for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "dsrl_qwen3.ipynb"])
def test_notebook_is_valid_and_its_code_compiles(name):
    from IPython.core.inputtransformer2 import TransformerManager

    path = NOTEBOOKS / name
    json.loads(path.read_text())  # plain JSON first: a clear error if the file is broken
    cells = code_cells(path)
    assert cells
    transform = TransformerManager().transform_cell  # %pip and !shell lines -> Python, as IPython runs them
    for index, source in enumerate(cells):
        compile(transform(source), f"{name} code cell {index}", "exec")


def test_gpu_notebook_says_what_hardware_it_needs():
    import nbformat

    first = nbformat.read(NOTEBOOKS / "dsrl_qwen3.ipynb", as_version=4).cells[0]
    assert first.cell_type == "markdown" and "Hardware" in first.source and "8 GPUs" in first.source
    quickstart = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4).cells[0]
    assert "Hardware" in quickstart.source and "CPU" in quickstart.source


@pytest.mark.parametrize("name", ["quickstart.ipynb", "dsrl_qwen3.ipynb"])
def test_notebook_names_the_current_hub_login(name):
    """huggingface_hub installs `hf`; `huggingface-cli` is the old name."""
    text = (NOTEBOOKS / name).read_text()
    assert "huggingface-cli" not in text
    if "login" in text:
        assert "hf auth login" in text


def run_install_cell(cwd: Path, monkeypatch) -> list[list[str]]:
    """Runs the quickstart's install cell as if prerl_trl were not importable; returns the commands it ran."""
    from IPython.core.inputtransformer2 import TransformerManager

    source = code_cells(NOTEBOOKS / "quickstart.ipynb")[0]
    assert source.startswith("# Install")
    calls: list[list[str]] = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args, **kwargs: None)
    monkeypatch.setattr(subprocess, "check_call", lambda command, **kwargs: calls.append(list(command)))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the cell puts the checkout's src/ first
    monkeypatch.chdir(cwd)
    exec(compile(TransformerManager().transform_cell(source), "install cell", "exec"), {"__name__": "cell"})
    return calls


def test_quickstart_installs_from_the_checkout_it_runs_in(tmp_path, monkeypatch):
    """prerl-trl is not on PyPI yet: inside a checkout the notebook installs that checkout, not `prerl-trl`."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert run_install_cell(NOTEBOOKS, monkeypatch) == [[*pip, "-e", str(NOTEBOOKS.parent)]]

    checkout = tmp_path / "checkout"
    (checkout / "notebooks" / "deeper").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "prerl-trl"\n')
    assert run_install_cell(checkout / "notebooks" / "deeper", monkeypatch) == [[*pip, "-e", str(checkout)]]

    elsewhere = tmp_path / "elsewhere"  # a pyproject.toml of another project does not count
    elsewhere.mkdir()
    (elsewhere / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert run_install_cell(elsewhere, monkeypatch) == [[*pip, "prerl-trl"]]


@pytest.mark.slow
def test_quickstart_notebook_runs_on_the_cpu(tmp_path):
    """Executes every cell (nbclient, a fresh kernel), then checks the outputs: accuracies before and after, the plot,
    and the saved model files."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the kernel
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for label in ("before trained-on", "before held-out", "after trained-on", "after held-out"):
        assert " ".join(label.split()) in " ".join(text.split()), label
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot of the switch
    assert "model.safetensors" in text and "README.md" in text
    # The training cell prints the demo's per-step table, not one metric dictionary per step.
    assert "step phase reward kept log P(y)" in " ".join(text.split())
    phases = re.findall(r"^\s*\d+\s+(NSR-PreRL|GRPO)\s", text, re.MULTILINE)
    assert phases == ["NSR-PreRL"] * 10 + ["GRPO"] * 20
    assert "'prerl/active'" not in text and "'train_runtime'" not in text
