"""Data-parallel training on ``torch.distributed``, started by torchrun (D2L §12.5-12.6, done
the way PyTorch does it rather than the book's hand-written ``split_and_load``/``allreduce``).

torchrun starts N processes (one per GPU, or N on the CPU), on one machine or several, and gives
each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`start` joins them into one process
group (gloo for CPU tensors, NCCL for CUDA tensors). ``divekit run NAME --nproc N`` starts torchrun
for you on one machine (:func:`launch`). Then, in every process:

* the data: all processes hold the same data and draw the same shuffled order each epoch; each
  loader yields only its process's share of every minibatch (:func:`split_data`), so
  ``--batch-size`` stays the global minibatch, the book's, and the number of steps per epoch does
  not depend on N. The batch size must be a multiple of N;
* the model: :func:`data_parallel` wraps it in ``DistributedDataParallel``, which averages the
  gradients over the processes during ``backward``: every step is the one-process step on the
  whole minibatch (an uneven last minibatch's shares weighted by their size: ``TensorLoader.shard``).
  With ``fsdp`` (:func:`shard_model`), FSDP2's ``fully_shard`` splits parameters, gradients and
  optimizer state over the processes instead;
* randomness: every process starts from the same seed (the same initial weights, the same order),
  then each takes its own random stream for dropout and augmentation;
* metrics: the epoch's sums are all-reduced (``MetricSums.totals``), and the losses the trainer
  looks at every ``log_every`` steps are averaged over processes (:func:`mean_over_processes`), so
  all processes stop together on a NaN;
* files: process 0 alone writes the run folder, logs and shows the progress bar; a checkpoint holds
  the whole run's state (the full model and optimizer, the global metric sums, every process's
  rows of a language model's hidden state and every process's random state), so it resumes under
  any number of processes, one included; checkpoints within an epoch are written when process 0's
  clock says so, at the steps where the losses are looked at.
"""

from __future__ import annotations

import collections

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("divekit")

RUN_DIR_ENV = "DIVEKIT_RUN_DIR"  # set by `divekit run --nproc N` for its processes: the run folder it made
RANK_STREAM = 1_000_033  # seed offset between the processes' random streams


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: ``rank`` of ``size`` (0 of 1 alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    fsdp: bool = False
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Whether this process writes files, logs and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.size > 1


_world = World()


def world() -> World:
    """This process's :class:`World` (one process until :func:`start` joins torchrun's)."""
    return _world


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher that sets its variables) started this process among several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(fsdp: bool = False) -> World:
    """Join the processes torchrun started (once; later calls return the same world). Outside
    torchrun there is one process and nothing to do."""
    global _world
    if _world.enabled:
        return _world
    if not under_torchrun():
        if fsdp:
            raise ValueError("--fsdp shards the model over several processes: start the run with --nproc N (N > 1) "
                             "or under torchrun")
        return _world
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    _world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), fsdp, backend)
    if not _world.main:
        log.setLevel(logging.WARNING)  # one process speaks for the run; the others only warn
    return _world


def finish() -> None:
    """Leave the process group (at the end of a command)."""
    global _world
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _world = World()


def describe(batch_size: int | None) -> dict:
    """How the run is split, for config.json: processes, strategy, backend and batch sizes."""
    record = {"processes": _world.size, "strategy": ("fsdp" if _world.fsdp else "ddp") if _world.enabled else None,
              "backend": _world.backend}
    if batch_size is not None:
        record.update(global_batch_size=batch_size, batch_size_per_process=batch_size // _world.size)
    return record


def process_device(device: torch.device) -> torch.device:
    """This process's device: under torchrun on GPUs, the GPU of its local rank."""
    if not _world.enabled or device.type != "cuda":
        return device
    if device.index is not None and device.index != _world.local_rank:
        raise ValueError(f"under torchrun each process trains on the GPU of its local rank; use --device cuda, "
                         f"not {device}")
    torch.cuda.set_device(_world.local_rank)
    return torch.device("cuda", _world.local_rank)


# -- launching -------------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, which ``divekit run`` and ``resume`` take as Ctrl-C: unlike Ctrl-C, only this process was told."""


def launch(argv: list[str], nproc: int, run_dir: Path, debug: bool = False) -> None:
    """Run ``divekit ARGV`` in ``nproc`` processes on this machine under torchrun (a local
    rendezvous on a free port) and wait for them. ``run_dir``: the run folder they train into (made
    by the caller for ``run``; the folder resumed); ``debug``: the processes show tracebacks. Each
    process gets ``OMP_NUM_THREADS`` = cores / ``nproc`` unless it is set. A failed process stops them
    all: a RuntimeError then says so and where the run can continue from."""
    env = {**os.environ, RUN_DIR_ENV: str(run_dir)}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    argv = [a for i, a in enumerate(argv)  # without --nproc N (torchrun would take it for its own --nproc-per-node)
            if not (a == "--nproc" or a.startswith("--nproc=") or (i > 0 and argv[i - 1] == "--nproc"))]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "divekit", *(["--debug"] if debug else []), *argv]
    process = subprocess.Popen(command, env=env)
    try:
        status = process.wait()
    except KeyboardInterrupt as stop:  # Ctrl-C: the terminal told torchrun and its processes too
        if isinstance(stop, Terminated):  # SIGTERM to this process alone: torchrun passes it on to its processes
            process.send_signal(signal.SIGTERM)
        process.wait()
        raise
    if status == 0:
        return
    raise RuntimeError(f"a process of the run stopped, and torchrun stopped the others (exit status {status}; "
                       f"the processes' own errors are above); {_where_to_continue(run_dir)}")


def _where_to_continue(run_dir: Path) -> str:
    from divekit.run_folder import CHECKPOINT_NAME
    from divekit.train.checkpoint import read_checkpoint

    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return "no checkpoint had been written, so nothing was kept: start the run again"
    state = read_checkpoint(path)
    epoch, step = state["epoch"], state["step"]
    where = f"epoch {epoch}" + (f" and {step} batches of epoch {epoch + 1}" if step else "")
    return f"its last checkpoint, after {where}, is intact: `divekit resume {run_dir}` continues from it"


def launched_run_dir() -> Path | None:
    """The run folder :func:`launch` made for this process, if it was started that way."""
    path = os.environ.get(RUN_DIR_ENV)
    return Path(path) if path and _world.enabled else None


# -- data and model --------------------------------------------------------------------------------


def check_batch_size(batch_size: int, nproc: int) -> None:
    """Refuse a minibatch that ``nproc`` processes cannot share evenly (checked before they start, too)."""
    if batch_size % nproc:
        raise ValueError(f"--batch-size {batch_size} cannot be split evenly over {nproc} processes; "
                         f"choose a multiple of {nproc} (it is the global minibatch, the book's)")


def split_data(train, evaluation=None) -> None:
    """Make the training and evaluation loaders yield this process's share of every minibatch
    (their ``shard`` method). The training batch size must be a multiple of the processes."""
    if not _world.enabled:
        return
    check_batch_size(train.batch_size, _world.size)
    for loader in (train, evaluation):
        if loader is None:
            continue
        if not hasattr(loader, "shard"):
            raise ValueError(f"a {type(loader).__name__} cannot be split over processes (it has no shard method)")
        loader.shard(_world.rank, _world.size)
        left = getattr(loader, "num_examples", 0) % loader.batch_size
        if 0 < left < _world.size:
            log.warning(f"the last {left} examples of each pass are left out: a minibatch of fewer examples than "
                        f"processes ({_world.size}) cannot be shared")


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """With ``fsdp``, FSDP2's ``fully_shard`` on each top-level block that has parameters (each block of a
    top-level list of blocks), then on the whole model, so each process keeps 1/N of every parameter,
    gradient and optimizer state and gathers a block's parameters only while it runs (a decoder's
    ``init_state`` counts as running). A block that shares a parameter with another
    (BERT's MLM output tied to its embeddings) is left to the whole model's unit: sharded on its own,
    each block would get a copy, and the tie would be gone. Call it before the optimizer is made (the
    optimizer must see the sharded parameters). Without ``fsdp``, the model as it is."""
    if not _world.fsdp:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    model = model.to(memory_format=torch.contiguous_format)  # FSDP2 shards contiguous parameters only
    mesh = init_device_mesh(device.type, (_world.size,))
    blocks = [part for block in model.children()  # a list of blocks (SSD's predictors) has no forward: its blocks
              for part in (block.children() if isinstance(block, (nn.ModuleList, nn.ModuleDict)) else (block,))]
    owners = collections.Counter(id(p) for block in blocks for p in block.parameters())
    for block in blocks:
        params = list(block.parameters())
        if any(p.requires_grad for p in params) and all(owners[id(p)] == 1 for p in params):
            fully_shard(block, mesh=mesh)
            if hasattr(block, "init_state"):  # a decoder's init_state (D2L §9.6) runs its layers outside forward
                register_fsdp_forward_method(block, "init_state")
    fully_shard(model, mesh=mesh)
    return model


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """What the trainer runs the forward pass through: ``DistributedDataParallel`` around the model
    (the model itself in one process, or once :func:`shard_model` has sharded it). From here on
    each process draws from its own random stream (dropout differs between the shares)."""
    if not _world.enabled:
        return model
    torch.manual_seed(torch.initial_seed() + _world.rank * RANK_STREAM)
    if _world.fsdp:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# -- collectives the trainer needs -----------------------------------------------------------------


def whole_minibatch_counts(*counts: torch.Tensor | int) -> tuple:
    """Counts of this process's share of a minibatch (real tokens, assigned anchors, examples) summed
    over the processes in one all-reduce: the whole minibatch's counts (float32 tensors, exact to 2^24;
    in one process the counts as they are)."""
    if not _world.enabled:
        return counts
    device = next((c.device for c in counts if isinstance(c, torch.Tensor)), torch.device("cpu"))
    totals = torch.stack([torch.as_tensor(c, device=device).detach().to(torch.float32) for c in counts])
    dist.all_reduce(totals)
    return tuple(totals)


def whole_minibatch_mean(local_sum: torch.Tensor, whole_count: torch.Tensor | float) -> torch.Tensor:
    """The loss a process backpropagates for a mean over the whole minibatch of what each share sums:
    ``local_sum`` * N / the whole minibatch's count (from :func:`whole_minibatch_counts`), so that the
    gradient DDP averages over the N processes is that of the whole minibatch's mean (a count that
    differs between shares, e.g. real tokens, would otherwise weigh them wrongly). A count of 0
    (nothing to average) counts as 1. In one process: local_sum / count."""
    count = max(whole_count, 1) if isinstance(whole_count, (int, float)) else whole_count.clamp(min=1)
    return local_sum / count if not _world.enabled else local_sum * _world.size / count


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over processes (a NaN in one process's makes it NaN everywhere)."""
    if not _world.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / _world.size


def decided_by_main(flag: bool) -> bool:
    """Process 0's ``flag``, in every process (so that all take a collective step together)."""
    if not _world.enabled:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (``[obj]`` alone)."""
    if not _world.enabled:
        return [obj]
    objects = [None] * _world.size
    dist.all_gather_object(objects, obj)
    return objects


def first_found(name: str | None) -> str | None:
    """The first of the processes' ``name`` that is not None (e.g. a non-finite parameter found in one shard)."""
    return next((n for n in gather_objects(name) if n is not None), None)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a tensor that FSDP shards (a DTensor); any other tensor as it is."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _map_tensors(fn, state):
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(_map_tensors(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: _map_tensors(fn, v) for k, v in state.items()}
    return state


def gather_rows(state, dim: int):
    """Every process's rows of carried state (tensors, or tuples and dicts of them, each process's
    rows along ``dim``) joined in rank order: the state of the whole minibatch."""
    if not _world.enabled:
        return state

    def gather(tensor):
        parts = [torch.empty_like(tensor) for _ in range(_world.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)

    return _map_tensors(gather, state)


def rows_of_process(state, dim: int):
    """This process's rows of whole-minibatch state (:func:`gather_rows`' inverse, for any number of processes)."""
    if not _world.enabled:
        return state
    return _map_tensors(lambda t: t.tensor_split(_world.size, dim=dim)[_world.rank], state)


# -- whole-model state -----------------------------------------------------------------------------


def full_model_state(model: nn.Module) -> dict:
    """The model's state dict as one process would have it, whatever the strategy. Every process calls it
    (FSDP gathers the shards); under FSDP the parameters are whole on process 0 (empty elsewhere)."""
    if not _world.fsdp:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter as a whole tensor in every process (FSDP's shards gathered: every process calls it)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The model's and the optimizer's state dicts as one process would have them (parameters
    numbered as ``Optimizer.state_dict`` numbers them), whatever the strategy. Every process
    calls it (FSDP gathers the shards); the parameters are whole on process 0 (empty elsewhere)."""
    if not _world.fsdp:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    model_state = full_model_state(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    by_name = get_optimizer_state_dict(model, optimizer, options=options)  # keyed by parameter names
    if not _world.main:
        return model_state, by_name  # (empty: the full state is offloaded to process 0's memory)
    number = {name: i for i, name in enumerate(n for group in by_name["param_groups"] for n in group["params"])}
    groups = [{**g, "params": [number[n] for n in g["params"]]} for g in by_name["param_groups"]]
    optimizer_state = {"state": {number[name]: s for name, s in by_name["state"].items()}, "param_groups": groups}
    return model_state, optimizer_state


def _state_like_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Give the optimizer's per-parameter tensors their parameter's memory layout: a checkpoint written
    under FSDP holds them contiguous, a model trained here may be channels-last, and the fused Adam
    pairs elements by memory order, not by index."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                          optimizer_state: dict) -> None:
    """Load :func:`full_state_dicts`' dicts (from a run under any number of processes) in every process."""
    if not _world.fsdp:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        _state_like_parameters(optimizer)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    if not optimizer_state["state"]:  # SGD keeps none: torch's loader would find no tensor to learn the device from
        optimizer.load_state_dict(optimizer_state)  # the groups' hyperparameters, by the parameters' order
        return
    names = {id(p): name for name, p in model.named_parameters()}
    name_of = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups = [{**g, "params": [name_of[i] for i in g["params"]]} for g in optimizer_state["param_groups"]]
    by_name = {"state": {name_of[i]: s for i, s in optimizer_state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, by_name, options=options)
