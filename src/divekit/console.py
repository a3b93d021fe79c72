"""What a person sees while divekit works: log lines that do not break the progress bar, on the
command line and in a notebook alike."""

from __future__ import annotations

import logging
import sys

LOGGER = "divekit"


class _TqdmHandler(logging.Handler):
    """Log lines written above the progress bar instead of through it."""

    def emit(self, record):
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(quiet: bool = False, *, only_if_unset: bool = False) -> None:
    """Send divekit's log lines (INFO, or WARNING when ``quiet``) to stderr through tqdm. With
    ``only_if_unset``, leave a logging set-up the user made alone."""
    logger = logging.getLogger(LOGGER)
    if only_if_unset and (logger.handlers or logging.getLogger().handlers):
        return
    logger.handlers[:] = [_TqdmHandler()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (Colab, Kaggle, JupyterLab), where figures show inline."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    return ip is not None and type(ip).__name__ != "TerminalInteractiveShell" and hasattr(ip, "kernel")
