"""The files of a run folder (``divekit run`` makes one per run, ``divekit resume`` continues it),
named in one place, without torch, for the runner, the trainer, predictions and the report."""

CONFIG_NAME = "config.json"  # the experiment, every option, the changes resumes made
METRICS_NAME = "metrics.csv"  # one row per epoch (a demonstration's own table otherwise)
CHECKPOINT_NAME = "checkpoint.pt"  # everything needed to continue the run
BEST_NAME = "best.pt"  # the weights of the best epoch by a validation split
MODEL_CARD = "model.json"  # the model, its config and its inputs, for predictions
CURVES_NAME = "curves.png"  # the training curves
SUMMARY_NAME = "summary.json"  # the final metrics and results beside the book's
LOCK_NAME = ".lock"  # held by the process training into the folder
TENSORBOARD_DIR = "tensorboard"  # --tensorboard's event files
