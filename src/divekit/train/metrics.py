"""Metric sums kept on the training device and read back once per epoch (D2L §3.6's Accumulator,
without its per-batch ``float()`` that forces a device-to-host copy every step)."""

from __future__ import annotations

import torch
import torch.distributed as dist


class MetricSums:
    """Running sums of named quantities (loss sums, correct counts, example counts, and tensors such
    as a segmentation's confusion matrix).

    ``add`` takes tensors (kept on their device, detached) or plain numbers; ``totals`` syncs once,
    summing across processes too when ``torch.distributed`` is initialised: scalars as floats,
    tensors of one or more dimensions as float64 CPU tensors.
    """

    def __init__(self):
        self._sums: dict[str, torch.Tensor | float] = {}

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            current = self._sums.get(name)
            if current is None:
                self._sums[name] = value.clone() if isinstance(value, torch.Tensor) else value
            elif isinstance(current, torch.Tensor):
                current.add_(value)
            else:
                self._sums[name] = value + current  # a tensor plus a number stays a tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sums so far, as tensors (for a checkpoint written within an epoch); summed across
        processes when ``torch.distributed`` is initialised (every process must call it then)."""
        if not (dist.is_available() and dist.is_initialized()):
            return {name: torch.as_tensor(value).detach().cpu() for name, value in self._sums.items()}
        return {name: torch.as_tensor(value, dtype=torch.float64) for name, value in self.totals().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> None:
        """Continue from :meth:`state_dict`'s sums. Under ``torch.distributed`` (they are the sums of
        all processes then) process 0 takes them and the others start from zeros, so that
        :meth:`totals` counts them once."""
        first = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        self._sums = {name: (value if first else torch.zeros_like(value)).to(device) for name, value in state.items()}

    def totals(self) -> dict[str, float | torch.Tensor]:
        if not self._sums:
            return {}
        device = next((v.device for v in self._sums.values() if isinstance(v, torch.Tensor)), "cpu")
        values = {n: torch.as_tensor(v, device=device).to(torch.float64) for n, v in self._sums.items()}
        flat = torch.cat([v.reshape(-1) for v in values.values()])  # one vector: one sync, one all_reduce
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flat)
        flat, totals, start = flat.cpu(), {}, 0
        for name, value in values.items():
            part = flat[start:start + value.numel()]
            totals[name] = part.reshape(value.shape) if value.dim() else float(part)
            start += value.numel()
        return totals
