"""--tensorboard: every epoch's metrics as TensorBoard scalars, read back with TensorBoard's own reader."""

import csv

import pytest

import divekit

pytest.importorskip("tensorboard")


def test_tensorboard_scalars_are_the_epochs_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = divekit.run("linear-regression", epochs=3, tensorboard=True, out=tmp_path, progress=False)
    events = EventAccumulator(str(run.run_dir / "tensorboard"))
    events.Reload()
    rows = list(csv.DictReader((run.run_dir / "metrics.csv").open()))
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([float(r["train_loss"]) for r in rows], rel=1e-6)
    assert [e.value for e in events.Scalars("train_full/r2")] == pytest.approx([float(r["train_full_r2"]) for r in rows])
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([0.03] * 3)
    assert run.summary["comparable"]  # logging does not make a run another experiment


def test_tensorboard_without_the_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match=r"--tensorboard needs the tensorboard package: pip install 'divekit\[tensorboard\]'"):
        divekit.run("linear-regression", tensorboard=True)
