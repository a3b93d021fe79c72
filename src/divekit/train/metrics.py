"""Metric sums kept on the training device and read back once per epoch (D2L §3.6's Accumulator,
without its per-batch ``float()`` that forces a device-to-host copy every step)."""

from __future__ import annotations

import torch
import torch.distributed as dist


class MetricSums:
    """Running sums of named quantities (loss sums, correct counts, example counts).

    ``add`` takes tensors (kept on their device, detached) or plain numbers; ``totals`` syncs once,
    summing across processes too when ``torch.distributed`` is initialised.
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
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in self.totals().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> None:
        """Continue from :meth:`state_dict`'s sums. Under ``torch.distributed`` (they are the sums of
        all processes then) process 0 takes them and the others start from zeros, so that
        :meth:`totals` counts them once."""
        first = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        self._sums = {name: (value if first else torch.zeros_like(value)).to(device) for name, value in state.items()}

    def totals(self) -> dict[str, float]:
        if not self._sums:
            return {}
        names = list(self._sums)
        device = next((v.device for v in self._sums.values() if isinstance(v, torch.Tensor)), "cpu")
        stacked = torch.stack([torch.as_tensor(self._sums[n], device=device).to(torch.float64) for n in names])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stacked)
        return dict(zip(names, stacked.tolist()))
