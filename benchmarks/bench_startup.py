"""End to end, as a user waits: `divekit --help`, `divekit list`, and one LeNet epoch (D2L §6.6)
from the command to the last file, against d2l's own code for the same epoch run as a script.

Each is a fresh process, timed from outside (wall clock), repeated and interleaved. For divekit's
LeNet epoch the time outside the training pass (imports, data, evaluation, figures, files) is the
wall time less the trainer's ``seconds``; the first run of a repeat set starts with an empty cache
(Fashion-MNIST decoded from its gzip files), the others with the decoded copy the first one kept.
d2l's side is ``_d2l_cnn.py --epochs 1`` (the book's network and ``train_ch6`` body, evaluation
included, 4 DataLoader workers), also timed from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import loadavg, report_header, run_meta, wait_for_idle, write_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--d2l-python", default=".d2l-venv/bin/python")
    p.add_argument("--tv-shim", default="../shared/bench/tv_shim.py")
    p.add_argument("--wait-idle", type=float, default=0, help="wait up to this many seconds for a load below 1")
    p.add_argument("--out", type=Path, default=HERE / "results" / "startup.md")
    args = p.parse_args(argv)
    waited = wait_for_idle(args.wait_idle)
    load_before = loadavg()
    divekit = [sys.executable, "-m", "divekit"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}
    env.setdefault("FMNIST_DIR", str(Path(os.environ.get("DIVEKIT_DATA", "../shared/data")) / "fashion-mnist"))
    rows: dict[str, list[float]] = {"help": [], "list": [], "lenet": [], "lenet_train": [], "lenet_cold": [], "d2l": []}
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        for repeat in range(args.repeats):
            rows["help"].append(timed([*divekit, "--help"], env)[0])
            rows["list"].append(timed([*divekit, "list"], env)[0])
            out = Path(tmp) / f"runs{repeat}"
            seconds, _ = timed([*divekit, "run", "lenet", "--epochs", "1", "--no-progress", "--out", str(out)], env)
            (run_dir,) = out.iterdir()
            train = json.loads((run_dir / "summary.json").read_text())["train_seconds"]
            rows["lenet_cold" if repeat == 0 else "lenet"].append(seconds)
            rows["lenet_train"].append(train)
            d2l_seconds, _ = timed([args.d2l_python, str(HERE / "_d2l_cnn.py"), "--model", "lenet", "--epochs", "1",
                                    "--threads", str(args.threads), "--tv-shim", args.tv_shim], env)
            rows["d2l"].append(d2l_seconds)
    med = {k: statistics.median(v) if v else float("nan") for k, v in rows.items()}
    warm_lenet = med["lenet"] if rows["lenet"] else med["lenet_cold"]
    meta = run_meta("bench_startup.py", argv, args.threads)
    lines = report_header("Start-up and end to end: what a user waits for", meta) + [
        f"- load average before: {load_before} (waited {waited:.0f} s for idle); after: {loadavg()}",
        "",
        "| what | seconds (median) | all |",
        "|---|---|---|",
        f"| `divekit --help` | {med['help']:.2f} | {', '.join(f'{v:.2f}' for v in rows['help'])} |",
        f"| `divekit list` | {med['list']:.2f} | {', '.join(f'{v:.2f}' for v in rows['list'])} |",
        f"| `divekit run lenet --epochs 1`, empty cache (decodes the gzip files) | {med['lenet_cold']:.2f} | "
        f"{', '.join(f'{v:.2f}' for v in rows['lenet_cold'])} |",
        f"| `divekit run lenet --epochs 1`, decoded copy cached | {warm_lenet:.2f} | "
        f"{', '.join(f'{v:.2f}' for v in rows['lenet'])} |",
        f"| of which the training pass | {med['lenet_train']:.2f} | {', '.join(f'{v:.2f}' for v in rows['lenet_train'])} |",
        f"| d2l's LeNet epoch as a script (`_d2l_cnn.py --epochs 1`) | {med['d2l']:.2f} | "
        f"{', '.join(f'{v:.2f}' for v in rows['d2l'])} |",
        "",
        f"End to end, divekit's LeNet epoch takes {warm_lenet / med['d2l']:.2f}x d2l's time "
        f"({med['d2l'] / warm_lenet:.2f}x faster); {warm_lenet - med['lenet_train']:.1f} s of its "
        f"{warm_lenet:.1f} s are outside the training pass.",
        "",
    ]
    write_atomic(args.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
