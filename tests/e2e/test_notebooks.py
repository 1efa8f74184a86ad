"""Both analysis notebooks run top to bottom (nbclient, a real kernel) on tiny runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


def execute(name: str, **params) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert all(line.split("=")[0].strip() in params for line in first.source.splitlines() if "=" in line)
    first.source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text.append(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_ablation_notebook(ablation_run, search_run):
    _, _, run, _ = ablation_run
    nb = execute("ablation_analysis.ipynb", RUN_DIR=str(run), COMPARE_DIR=str(search_run / "run"))
    text = outputs(nb)
    assert "ce_only" in text and "baseline" in text and "p_holm" in text
    assert (
        sum(1 for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {}))
        >= 4
    )  # heatmap, boxes, slices, learning curves


def test_search_notebook(search_run):
    nb = execute("search_analysis.ipynb", RUN_DIR=str(search_run / "run"))
    text = outputs(nb)
    assert "selected:" in text and "train.optimizer.lr" in text
