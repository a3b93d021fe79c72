"""Checkpoints: everything needed to continue a run exactly where it stopped, and what it belongs to.

A checkpoint holds the model, optimizer and scheduler states, how far training got (finished
epochs, and batches of the next epoch when it was written within an epoch), the metric history, the
unfinished epoch's metric sums and the task's carried state (a language model's hidden state),
torch's random states, and ``run``: a description of the run it belongs to (the experiment, its
options, a fingerprint of its data), which resume compares with the run it is asked to continue.
It is written atomically and loaded with ``weights_only=True``.

Under data-parallel training (:mod:`divekit.train.distributed`) every process calls
:func:`save_checkpoint` and :func:`load_checkpoint`; the checkpoint holds the whole model and
optimizer as one process has them (gathered from FSDP's shards) and every process's random state,
and process 0 writes it, so it resumes under any number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from divekit import io
from divekit.train import distributed

FORMAT = 2


@dataclass
class TrainingState:
    """How far training got: ``epoch`` epochs finished and ``step`` batches of the next one."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    sums: dict = field(default_factory=dict)  # the unfinished epoch's metric sums (MetricSums.state_dict())
    task: dict = field(default_factory=dict)  # the task's carried state (Task.state_dict())
    run: dict = field(default_factory=dict)  # what the checkpoint belongs to


def _random_state() -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []


def save_checkpoint(path: Path, *, model, optimizer, scheduler, state: TrainingState) -> None:
    """Write the checkpoint (every process calls it; process 0 writes)."""
    model_state, optimizer_state = distributed.full_state_dicts(model, optimizer)
    (torch_rng, cuda_rng), *other_processes = distributed.gather_objects(_random_state())
    if not distributed.world().main:
        return
    io.save({
        "format": FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "sums": state.sums,
        "task": state.task,
        "run": state.run,
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "torch_rng": torch_rng,
        "cuda_rng": cuda_rng,
        "process_rngs": [list(rng) for rng in other_processes],  # processes 1, 2, ... (torch, cuda)
        "mps_rng": torch.mps.get_rng_state() if torch.backends.mps.is_available() else None,  # a Mac's GPU: one process
    }, path)


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, or a ValueError saying why the file is not a divekit checkpoint."""
    state = io.load(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a divekit checkpoint of format {FORMAT} (found {found!r}); "
                         "the run folder was changed by hand: start the run again")
    return state


class ResumeMismatchError(ValueError):
    """The checkpoint belongs to another run than the one asked to continue from it."""


def load_checkpoint(path: Path, *, model, optimizer, scheduler, expected_run: dict) -> TrainingState:
    """Restore the model, optimizer, scheduler and random states in place; return how far training
    got. A checkpoint whose ``run`` is not ``expected_run`` is refused, saying what differs, before
    anything is restored."""
    state = read_checkpoint(path)
    differences = _differences(state["run"], expected_run)
    if differences and all(d.startswith(("data:", "model_card:")) for d in differences) and \
            any(d.startswith("data:") for d in differences):  # the same run, its data changed since
        users = (expected_run.get("config") or {}).get("data")
        what = f"its --data {users} changed" if users else "the data set was read otherwise (another divekit, or " \
                                                            "files downloaded again)"
        raise ResumeMismatchError(f"{path} was trained on other data than is loaded now: {what} since the run "
                                  "started; put the run's data back as it was, or start a new run")
    if differences:
        raise ResumeMismatchError(f"{path} belongs to another run ({'; '.join(differences)}); "
                                  "resume it with the run it came from, or start a new run")
    distributed.load_full_state_dicts(model, optimizer, state["model"], state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    _restore_random_state(state)
    return TrainingState(state["epoch"], state["step"], state["history"], state["sums"], state["task"], state["run"])


def _restore_random_state(state: dict) -> None:
    """This process's random state: its own from the checkpoint, or, for a process the run did not
    have before (resumed under more processes), a stream of its own drawn from process 0's."""
    rank, others = distributed.world().rank, state.get("process_rngs", [])
    own = rank == 0 or rank > len(others)
    torch_rng, cuda_rng = (state["torch_rng"], state["cuda_rng"]) if own else others[rank - 1]
    torch.set_rng_state(torch_rng)
    if cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    if state.get("mps_rng") is not None and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps_rng"])
    if rank > len(others):
        torch.manual_seed(int(torch.randint(2**62, (1,))) + rank * distributed.RANK_STREAM)


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """What differs between two run descriptions: "config.impl: 'scratch' in the checkpoint, 'fast' here"."""
    differences = []
    for key in sorted(saved.keys() | current.keys()):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} in the checkpoint, {b!r} here")
    return differences
