"""The notebooks run top to bottom (nbclient) on tiny inputs, so they never rot."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cli import main

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, environment: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    saved = dict(os.environ)
    os.environ.update(environment)  # the kernel inherits this process's environment
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def outputs(notebook) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, analysed_run):
    run = tmp_path_factory.mktemp("baseline") / "baseline"
    assert main(["train", "--arch", "baseline", "--env", "MiniPong-v0", "--steps", "640", "--actors", "0",
                 "--envs-per-actor", "4", "--batch-size", "4", "--unroll", "8", "--checkpoint-every", "320",
                 "--out", str(run)]) == 0
    assert main(["atom", str(run), "--evalset", str(analysed_run / "analysis" / "evalset.npz"), "--methods", ""]) == 0
    return run


def test_analyse_checkpoint_notebook(analysed_run):
    notebook = execute("01_analyse_checkpoint.ipynb", {"INTERP_RUN": str(analysed_run), "INTERP_FRAMES": "2"})
    assert any(output.get("output_type") == "display_data" and "image/png" in output.get("data", {})
               for output in outputs(notebook))


def test_atom_notebook(analysed_run):
    notebook = execute("02_atom_over_training.ipynb", {"INTERP_RUN": str(analysed_run)})
    tables = [o["data"]["text/plain"] for o in outputs(notebook) if "text/plain" in o.get("data", {})]
    assert any("ball" in table and "player" in table for table in tables)


def test_compare_notebook(analysed_run, baseline_run):
    notebook = execute("03_compare_architectures.ipynb",
                       {"INTERP_RUN_A": str(baseline_run), "INTERP_RUN_B": str(analysed_run)})
    tables = [o["data"]["text/plain"] for o in outputs(notebook) if "text/plain" in o.get("data", {})]
    assert any("baseline" in table and "timesformer_divided" in table for table in tables)
