"""Step time of divekit's scratch optimizers against torch.optim's, on a ResNet-18-sized set of
parameters (D2L §11; the ``fast`` names of ``divekit.optim`` are torch's).

    PYTHONPATH=src python benchmarks/bench_optim.py [--steps 10] [--rounds 7] [--threads N] \
        [--out benchmarks/results/optim.md]

The parameters are 62 float32 tensors in the shapes of torchvision's ``resnet18`` (11,689,512
numbers: convolutions, batch-norm scales and shifts, the 1000-way classifier), built here from the
architecture, without torchvision. Every parameter has a fixed random gradient, so a step is the
optimizer's work alone: no forward or backward pass.

For each optimizer the variants are divekit's scratch class and ``torch.optim``'s class with
``foreach=False`` (torch's per-tensor loop), ``foreach=True`` (``torch._foreach_*`` over the list)
and ``fused=True`` where torch has a fused CPU kernel. For Adam there is one more row: the same
update as the scratch class written with ``torch._foreach_*`` ops (``foreach_adam_step`` below),
which measures what a foreach rewrite of the scratch optimizers would buy.

Timing: each variant gets its own parameters, gradients and optimizer, and 3 warm-up steps (which
also allocate the optimizer state). Then ``--rounds`` rounds each time ``--steps`` steps of every
variant in turn (interleaved, so that a change in the machine's load hits all variants alike); the
table gives the median over rounds of the time per step, and the ratio of the scratch optimizer's
median to each torch variant's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from divekit.optim import scratch

from common import loadavg, report_header, run_meta, write_atomic

HERE = Path(__file__).resolve().parent


def resnet18_shapes(num_classes: int = 1000) -> list[tuple[int, ...]]:
    """The parameter shapes of ResNet-18 (He et al. 2015; torchvision's ``resnet18``), in order."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]  # stem: 7x7 conv (no bias), batch norm
    in_channels = 64
    for out_channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):  # four stages of two blocks
        for block in range(2):
            block_in = in_channels if block == 0 else out_channels
            shapes += [(out_channels, block_in, 3, 3), (out_channels,), (out_channels,),  # conv, bn
                       (out_channels, out_channels, 3, 3), (out_channels,), (out_channels,)]  # conv, bn
            if block == 0 and (stride != 1 or block_in != out_channels):
                shapes += [(out_channels, block_in, 1, 1), (out_channels,), (out_channels,)]  # 1x1 shortcut, bn
        in_channels = out_channels
    shapes += [(num_classes, 512), (num_classes,)]  # classifier
    return shapes


def make_parameters(shapes, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=g) * 0.05) for shape in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    return params


# optimizer -> (scratch class, torch class, hyperparameters)
OPTIMIZERS = {
    "SGD": (scratch.SGD, torch.optim.SGD, {"lr": 0.01}),
    "SGD momentum 0.9": (scratch.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "AdaGrad": (scratch.AdaGrad, torch.optim.Adagrad, {"lr": 0.01}),
    "RMSProp": (scratch.RMSProp, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9}),
    "Adadelta": (scratch.Adadelta, torch.optim.Adadelta, {"rho": 0.9}),
    "Adam": (scratch.Adam, torch.optim.Adam, {"lr": 1e-3}),
    "AdamW": (scratch.AdamW, torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
    "Yogi": (scratch.Yogi, None, {"lr": 1e-2}),
}
TORCH_VARIANTS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


class ForeachAdam(torch.optim.Optimizer):
    """The scratch Adam's update over the whole parameter list with ``torch._foreach_*`` ops (for
    this benchmark only): the same arithmetic, a few calls per step instead of a few per tensor."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        for group in self.param_groups:
            (beta1, beta2), t = group["betas"], self.t
            ws = [w for w in group["params"] if w.grad is not None]
            gs = [w.grad for w in ws]
            for w in ws:
                if not self.state[w]:
                    self.state[w] = {"v": torch.zeros_like(w), "s": torch.zeros_like(w)}
            vs = [self.state[w]["v"] for w in ws]
            ss = [self.state[w]["s"] for w in ws]
            torch._foreach_mul_(vs, beta1)
            torch._foreach_add_(vs, gs, alpha=1 - beta1)  # v <- beta1 v + (1 - beta1) g
            torch._foreach_mul_(ss, beta2)
            torch._foreach_addcmul_(ss, gs, gs, value=1 - beta2)  # s <- beta2 s + (1 - beta2) g^2
            denominators = torch._foreach_div(ss, 1 - beta2**t)
            torch._foreach_sqrt_(denominators)
            torch._foreach_add_(denominators, group["eps"])
            torch._foreach_addcdiv_(ws, vs, denominators, value=-group["lr"] / (1 - beta1**t))


def variants(name: str, shapes) -> dict[str, Callable[[], None]]:
    """variant -> a function that takes one step of optimizer ``name``, each over its own parameters."""
    scratch_cls, torch_cls, hyper = OPTIMIZERS[name]
    steps = {"divekit scratch": scratch_cls(make_parameters(shapes), **hyper).step}
    if name == "Adam":
        steps["scratch update with torch._foreach_* (sketch)"] = ForeachAdam(make_parameters(shapes), **hyper).step
    for variant, flags in TORCH_VARIANTS.items() if torch_cls is not None else ():
        try:
            optimizer = torch_cls(make_parameters(shapes), **hyper, **flags)
            optimizer.step()  # fused CPU kernels exist for some optimizers only
        except (RuntimeError, ValueError, TypeError):
            continue
        steps[f"torch.optim {variant}"] = optimizer.step
    return steps


def time_steps(step: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def benchmark(name: str, steps: dict[str, Callable[[], None]], n: int, rounds: int) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {variant: [] for variant in steps}
    for _ in range(rounds):
        for variant, step in steps.items():
            times[variant].append(time_steps(step, n))
    print(name, {v: f"{statistics.median(t) * 1e3:.1f} ms" for v, t in times.items()}, file=sys.stderr)
    return times


def render(results: dict[str, dict[str, list[float]]], meta: dict) -> str:
    lines = [
        *report_header("Optimizer step time: divekit scratch vs torch.optim (ResNet-18-sized parameters, CPU)", meta),
        f"- parameters: {meta['tensors']} float32 tensors in ResNet-18's shapes, {meta['numel']:,} numbers "
        f"({meta['numel'] * 4 / 2**20:.0f} MiB); fixed random gradients; no forward or backward pass",
        f"- {meta['rounds']} interleaved rounds of {meta['steps']} steps per variant after 3 warm-up steps; "
        "times are medians over rounds (min-max in brackets)",
        f"- load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}",
        "",
        "*ratio* is the scratch optimizer's step time over the variant's, of the medians and of the fastest",
        "rounds (the latter is the steadier measure of the work itself on a busy machine): above 1 means",
        "the scratch optimizer is slower. Missing rows: torch has no fused CPU kernel (RMSprop, Adadelta)",
        "or no optimizer at all (Yogi).",
        "",
        "| optimizer | variant | ms / step, median [min-max] | ratio scratch / variant (median) "
        "| ratio (fastest round) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, times in results.items():
        ours = times["divekit scratch"]
        for variant, samples in times.items():
            median = statistics.median(samples)
            if variant == "divekit scratch":
                ratios = "— | —"
            else:
                ratios = f"{statistics.median(ours) / median:.2f} | {min(ours) / min(samples):.2f}"
            spread = f"[{min(samples) * 1e3:.1f}-{max(samples) * 1e3:.1f}]"
            lines.append(f"| {name} | {variant} | {median * 1e3:.1f} {spread} | {ratios} |")
    lines += ["", *findings(results), "", meta["notes"], ""]
    return "\n".join(lines)


def findings(results: dict[str, dict[str, list[float]]]) -> list[str]:
    """One line per torch variant: the scratch/variant ratio of medians over all optimizers."""
    lines = ["## Summary (ratio of medians, scratch / variant; below 1: scratch is faster)", ""]
    ratios: dict[str, dict[str, float]] = {}
    for name, times in results.items():
        ours = statistics.median(times["divekit scratch"])
        for variant, samples in times.items():
            if variant != "divekit scratch":
                ratios.setdefault(variant, {})[name] = ours / statistics.median(samples)
    for variant, by_optimizer in ratios.items():
        values = sorted(by_optimizer.values())
        listed = ", ".join(f"{name} {ratio:.2f}" for name, ratio in by_optimizer.items())
        lines.append(f"- {variant}: geometric mean {math.exp(statistics.fmean(map(math.log, values))):.2f} "
                     f"over {len(values)} optimizers ({listed})")
    return lines


NOTES = """## Reading the numbers

- An optimizer step over 11.7M parameters is memory-bound: each update streams the parameters, the
  gradients and the state through the cores. torch's for-loop and foreach implementations call one
  vectorised kernel per operation per tensor, as the scratch classes do, so all three make about
  the same number of passes over memory; on the CPU, torch's `_foreach_*` ops run the same
  per-tensor kernels in a C++ loop and save only the Python calls (62 tensors times a few
  operations: well under a millisecond). The fused kernels read and write each number once per
  step, which is where their advantage comes from.
- Temporaries the size of a parameter cost time too: a fresh large allocation is fresh memory for
  the kernel to fault in. The scratch Adam makes one (its denominator, `s.div(1 - beta2^t).sqrt_()`),
  torch's for-loop Adam two (`exp_avg_sq.sqrt()`, then `/ bias_correction2_sqrt`), and the foreach
  versions hold one per tensor for the whole list at once.
- The scratch classes' main body is therefore a readable per-parameter loop with in-place
  operations (`mul_`, `addcmul_`, `addcdiv_`), one temporary per update at most. The foreach sketch
  of Adam (the same update over the whole list with `torch._foreach_*`) measures what rewriting
  them that way would buy on the CPU: compare its row with the scratch row.
- On a machine shared with other jobs (as the load average above says this one was), one thread
  (`--threads 1`) and many short interleaved rounds give the steadiest numbers; the fastest-round
  ratio is the cross-check.
- On a GPU the picture differs (not measured here): each tensor's operations are separate kernel
  launches of several microseconds each, which foreach and fused implementations batch. Train with the
  torch names (`--optimizer adam`, `sgd`, ...) there; the scratch names are for learning and checking.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the table gives medians")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--only", default=None, help="comma-separated optimizers to time (default: all)")
    parser.add_argument("--out", default=str(HERE / "results" / "optim.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = resnet18_shapes()
    numel = sum(math.prod(s) for s in shapes)
    assert (len(shapes), numel) == (62, 11_689_512), (len(shapes), numel)  # torchvision resnet18's
    meta = {
        **run_meta(Path(__file__).name, argv, args.threads), "tensors": len(shapes), "numel": numel, "steps": args.steps, "rounds": args.rounds,
        "load_before": loadavg(), "notes": NOTES,
    }
    selected = None if args.only is None else {name.strip() for name in args.only.split(",")}
    results = {}
    for name in OPTIMIZERS:
        if selected is None or name in selected:
            results[name] = benchmark(name, variants(name, shapes), args.steps, args.rounds)
    meta["load_after"] = loadavg()
    text = render(results, meta)
    write_atomic(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
