"""divekit in a notebook (Colab, Kaggle, Jupyter): a fresh kernel runs an experiment from Python,
sees its curves inline as it trains and its results beside the book's, and leaves the same run
folder as the command line. Executed headless with nbclient (the ``notebook`` test extra)."""

import json

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def test_a_notebook_runs_an_experiment_with_inline_curves_and_the_same_run_folder(tmp_path):
    out = tmp_path / "runs"
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import divekit\n"
                                  f"run = divekit.run('linear-regression', epochs=2, out={str(out)!r})\n"
                                  "run"),
        nbformat.v4.new_code_cell("predictor = run.load()\n"
                                  "print(round(predictor.predict([{'x1': 1.0, 'x2': 1.0}])[0]['y'], 1))"),
    ])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    training, prediction = notebook.cells
    kinds = [output.get("output_type") for output in training.outputs]
    images = [o for o in training.outputs if "image/png" in o.get("data", {})]
    assert images, f"no inline curves among the outputs {kinds}"
    assert len(images) == 1  # one figure for the two epochs: redrawn in place, not appended
    result = next(o for o in training.outputs if o.get("output_type") == "execute_result")
    assert "train_full_loss" in result["data"]["text/html"] and "<img" in result["data"]["text/html"]
    logged = "".join(o.get("text", "") for o in training.outputs if o.get("output_type") == "stream")
    assert "done in" in logged and "next: `divekit predict" in logged
    assert prediction.outputs[0]["text"].strip() == "2.8"  # 2 - 3.4 + 4.2, the book's w and b
    (run_dir,) = out.iterdir()
    assert {"config.json", "summary.json", "metrics.csv", "model.json", "checkpoint.pt"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2
