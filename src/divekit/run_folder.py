"""The files of a run folder (``divekit run`` makes one per run, ``divekit resume`` continues it),
named in one place, without torch, for the runner, the trainer, predictions and the report."""

import re
import time

CONFIG_NAME = "config.json"  # the experiment, every option, the changes resumes made
METRICS_NAME = "metrics.csv"  # one row per epoch (a demonstration's own table otherwise)
CHECKPOINT_NAME = "checkpoint.pt"  # everything needed to continue the run
BEST_NAME = "best.pt"  # the weights of the best epoch by a validation split
MODEL_CARD = "model.json"  # the model, its config and its inputs, for predictions
CURVES_NAME = "curves.png"  # the training curves
SUMMARY_NAME = "summary.json"  # the final metrics and results beside the book's
LOCK_NAME = ".lock"  # held by the process training into the folder
TENSORBOARD_DIR = "tensorboard"  # --tensorboard's event files


def stamped_name(*parts: str | None) -> str:
    """A new run folder's name, NAME-IMPL-YYYYmmdd-HHMMSS (the parts that are not None, then the time);
    the runner adds -2, -3, ... where that folder exists already."""
    return "-".join(part for part in (*parts, time.strftime("%Y%m%d-%H%M%S")) if part)


def start_stamp(folder_name: str) -> tuple[str, int] | None:
    """The YYYYmmdd-HHMMSS stamp and counter (1 for none) of a name made by ``stamped_name``."""
    found = re.search(r"-(\d{8}-\d{6})(?:-(\d+))?$", folder_name)
    return (found[1], int(found[2] or 1)) if found else None
