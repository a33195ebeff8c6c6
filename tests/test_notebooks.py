"""notebooks/: the quickstart runs from top to bottom on the CPU; the GPU notebook is valid and its code compiles."""

from __future__ import annotations

import json
import os
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
    # one table of the steps, not a metrics dictionary per step
    assert "step  phase      reward   kept  log P(y)" in text and "{'loss'" not in text and "'reward':" not in text


def test_notebooks_install_the_checkout_they_sit_in_and_log_in_with_hf(tmp_path):
    import nbformat

    for name in ("quickstart.ipynb", "dsrl_qwen3.ipynb"):
        assert "huggingface-cli" not in (NOTEBOOKS / name).read_text(), f"{name}: huggingface_hub now installs `hf`"
    install = next(c for c in code_cells(NOTEBOOKS / "quickstart.ipynb") if "pip" in c)
    namespace: dict = {}
    exec(install.split("\nif importlib.util.find_spec")[0], namespace)  # the definitions, without installing
    find = namespace["prerl_trl_checkout"]
    assert find(NOTEBOOKS) == NOTEBOOKS.parent  # inside the checkout: that checkout
    assert find(tmp_path) is None  # elsewhere: PyPI
    markdown = [c.source for c in nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4).cells
                if c.cell_type == "markdown"]
    assert any("hf auth login" in m for m in markdown)
    assert any("from the checkout" in m and "PyPI" in m for m in markdown)
