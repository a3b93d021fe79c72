"""The ``divekit`` command: list, run, resume and report the book's experiments, and put trained runs to use.

    divekit list
    divekit run NAME [--epochs N --lr X --batch-size N --device D --seed N --impl scratch|fast --out DIR ...]
    divekit run NAME --help          (every option of that experiment, with the book's defaults)
    divekit resume RUN_DIR [--epochs N --lr X --device D ...]   (continue, or extend, a run)
    divekit predict RUN_DIR INPUT... (image files, a CSV table, a text prefix or a sentence)
    divekit evaluate RUN_DIR [--data PATH]
    divekit export RUN_DIR [--format safetensors|onnx] [--out FILE]
    divekit run NAME --nproc N [--fsdp]   (data-parallel in N processes; or start it with torchrun)
    divekit report [DIR]

Bad options and bad values are reported in one line with what is allowed; errors while running
(a missing data set, a diverging loss) are printed without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
from typing import Sequence

from divekit.console import setup_logging

PROG = "divekit"
SHOWN_OBJECTS = 10  # a detector's objects printed per image, best first


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reading a value such as -1e-3 as a number: Python 3.11's argparse took it for an
    option ("--lr: expected one argument"); 3.13's reads it as this does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-\.?\d")


def _main_parser() -> argparse.ArgumentParser:
    import divekit

    parser = _Parser(prog=PROG, description="Dive into Deep Learning, one command per experiment.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {divekit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    sub.add_parser("list", help="every experiment, with its book section and data set")
    run = sub.add_parser("run", help="run an experiment: divekit run NAME [options]; divekit run NAME --help for its options",
                         usage=f"{PROG} run NAME [options]",
                         description="Run an experiment (`divekit list` names them) into a new run folder. Its "
                                     "options are the experiment's own, the book's settings by default: `divekit run "
                                     "NAME --help` lists them.")
    run.add_argument("name", metavar="NAME", help="an experiment's name, as `divekit list` shows it")
    resume = sub.add_parser("resume", help="continue a run from its last checkpoint: divekit resume RUN_DIR "
                                           "[--epochs N --lr X ...]; divekit resume RUN_DIR --help for what may change")
    resume.add_argument("run_dir", metavar="RUN_DIR")
    predict = sub.add_parser("predict", help="predictions of a trained run: divekit predict RUN_DIR IMAGE.png ... "
                                              "(or TABLE.csv, a text prefix, a sentence to translate)")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("inputs", metavar="INPUT", nargs="+",
                         help="image files; one CSV table; prefixes for a language model; sentences to translate")
    for name, (kind, low, high, default, _, help_text) in PREDICT_OPTIONS.items():
        predict.add_argument("--" + name.replace("_", "-"), type=_number_in(kind, low, high),
                             metavar="N" if kind is int else "X",
                             help=f"{help_text} (default: {default})")
    _weights_and_device(predict)
    predict.add_argument("--json", action="store_true", help="print the predictions as JSON")
    evaluate = sub.add_parser("evaluate", help="a trained run's loss and metrics on other data: "
                                                "divekit evaluate RUN_DIR --data PATH")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--data", metavar="PATH", help="labelled data in the form the run trained on (a folder of "
                                                         "class sub-folders, a CSV with the target column, a text "
                                                         "file, a file of english<TAB>french lines, a detector's "
                                                         "folder of label.csv and images/); default: the "
                                                         "run's own evaluation data")
    _weights_and_device(evaluate)
    export = sub.add_parser("export", help="a trained run's weights as safetensors, or its model as ONNX")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                        help="safetensors (the weights, with model.json as metadata) or onnx (the model; needs "
                             "divekit[export]) (default: safetensors)")
    export.add_argument("--out", metavar="FILE", help="where to write it, a file or a folder to write model.safetensors "
                                                      "or model.onnx in (default: RUN_DIR)")
    _weights_and_device(export, device=False)
    report = sub.add_parser("report", help="a table of all runs in a folder beside the book's results (Markdown and HTML)")
    report.add_argument("dir", metavar="DIR", nargs="?", default="runs", help="the folder the runs went to (default: runs)")
    for command in (parser, *sub.choices.values()):
        command.allow_abbrev = False  # an option is taken only as spelt out (--weight is no --weights)
    parser.commands = sub.choices  # each command's own parser, for its own usage line in an error
    return parser


# predict's options: (type, lowest, highest, default, the kinds of run it is for, help)
PREDICT_OPTIONS = {
    "top_k": (int, 1, None, 3, ("images", "table"), "classes shown per input of a classifier"),
    "num_preds": (int, 0, None, 50, ("text",), "tokens a language model writes"),
    "beam_size": (int, 1, None, 1, ("translation",), "beam width of a translation (1: greedy)"),
    "min_score": (float, 0.0, 1.0, 0.5, ("detection",), "the lowest score of an object a detector reports"),
}
RUN_KINDS = {"images": "image-classification", "table": "table", "text": "language-model", "translation": "translation",
             "detection": "detection"}  # a predictor's kind, in words


def _with_article(words: str) -> str:
    return f"{'an' if words[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {words}"


def _number_in(kind: type, low, high):
    """An argparse type: a number of ``kind`` in [low, high] (high None: no upper end)."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an int' if kind is int else 'a number'}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {'inf' if high is None else high}]")
        return value

    return convert


def _weights_and_device(parser: argparse.ArgumentParser, device: bool = True) -> None:
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="best: the best epoch's by the validation metric where the run kept them, else the "
                             "last; last: the last checkpoint's (default: best)")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")


def _run_parser(experiment, only: Sequence[str] | None = None, prog: str | None = None,
                defaults: dict | None = None) -> argparse.ArgumentParser:
    """The options of ``divekit run NAME`` (or only those named in ``only``): one per field of the
    experiment's options, with its defaults (or ``defaults``, a run's own values)."""
    options = experiment.options
    own_data = (defaults or {}).get("data")  # a run of your own data: that data, and no book's result
    heading = f"{experiment.title} (D2L {experiment.section}) on {own_data or experiment.dataset}."
    parser = _Parser(
        prog=prog or f"{PROG} run {experiment.name}", allow_abbrev=False,  # --epoch is no --epochs
        description=heading if own_data else " ".join(filter(None, (heading, experiment.description))),
    )
    # a new run's help also names the values that another --impl starts from (a run's own are one value)
    other_impls = {} if defaults else experiment.impl_defaults
    defaults = {**{f.name: f.default for f in dataclasses.fields(options)}, **(defaults or {})}
    _add_options(parser, options, {k: v for k, v in defaults.items() if only is None or k in only}, other_impls)
    if only is None:
        parser.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    from divekit.experiments.registry import Demo

    _add_process_options(parser, one_process=isinstance(experiment, Demo))
    return parser


def _resume_parser() -> argparse.ArgumentParser:
    """``divekit resume --help`` without a run folder: what a resume does and the options it may change
    (``divekit resume RUN_DIR --help`` shows that run's values)."""
    from divekit.experiments.parts import RESUMABLE, TrainOptions

    parser = _Parser(prog=f"{PROG} resume", usage=f"{PROG} resume RUN_DIR [options]", description=(
        "Continue a run from its last checkpoint (written each epoch, and within one every --checkpoint-every "
        "seconds), or train a finished run further with more --epochs. A resume may change how the run trains "
        "from here on with the options below (each change is recorded in the run's config.json); those that shape "
        "the model or the data stay the run's. `divekit resume RUN_DIR --help` shows the run's values."))
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder that `divekit run` made")
    _add_options(parser, TrainOptions, {name: "the run's" for name in RESUMABLE})
    _add_process_options(parser, one_process=False)
    return parser


def _add_options(parser: argparse.ArgumentParser, options: type, defaults: dict,
                 other_impls: dict | None = None) -> None:
    """One argument per field of the dataclass ``options`` that ``defaults`` names, its help ending in that
    default (and in the values that another --impl starts from, ``other_impls``)."""
    from divekit.options import help_of, kinds, parse_value

    for name, kind in kinds(options).items():
        if name not in defaults:
            continue

        def convert(text, kind=kind):
            try:
                return parse_value(kind, text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        if kind.choices:
            metavar = "{" + ",".join(map(str, kind.choices)) + "}"
        else:
            metavar = {bool: "BOOL", tuple: "N,N,..."}.get(kind.type, name.upper())
        bare_means_true = {"nargs": "?", "const": True} if kind.type is bool else {}  # "--compile" = "--compile true"
        default = defaults[name]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "; ".join([str(shown), *(f"{values[name]} with --impl {impl}"
                                         for impl, values in (other_impls or {}).items() if name in values)])
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=convert, default=argparse.SUPPRESS,
                            metavar=metavar, help=f"{help_of(options, name)} (default: {shown})", **bare_means_true)


def _add_process_options(parser: argparse.ArgumentParser, one_process: bool) -> None:
    """--no-progress, --nproc and --fsdp; a demonstration (``one_process``) takes the last two, to refuse them
    with a reason, but its --help does not offer them."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help=argparse.SUPPRESS if one_process else
                        "train data-parallel in N processes on this machine, started with torchrun; --batch-size "
                        "stays the global minibatch (default: 1; see docs/DISTRIBUTED.md)")
    parser.add_argument("--fsdp", action="store_true",
                        help=argparse.SUPPRESS if one_process else
                        "with several processes, shard parameters, gradients and optimizer state (FSDP2) "
                        "instead of copying them into each")


def _cmd_list() -> int:
    """One line per experiment; on a terminal each line is cut to its width."""
    import shutil

    from divekit.experiments.registry import Demo, all_experiments

    experiments = all_experiments()
    width = max(len(e.name) for e in experiments)
    book = max(len(e.section) for e in experiments) + 1
    columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    print(f"{'NAME':<{width}}  {'BOOK':<{book}}  {'DATA':<16}  WHAT")
    for e in experiments:
        data = e.dataset if len(e.dataset) <= 16 else e.dataset.split(":")[0][:15].rstrip() + "…"
        own = " (also --data)" if e.user_data else " (a demonstration: one process)" if isinstance(e, Demo) else ""
        what = f"{e.title}; {e.description}" if e.description else e.title
        line = f"{e.name:<{width}}  {'§' + e.section:<{book}}  {data:<16}  {what}{own}"
        print(line if columns is None or len(line) <= columns else line[:columns - 1] + "…")
    return 0


def _cmd_run(name: str, argv: Sequence[str], debug: bool = False) -> int:
    from divekit.experiments.registry import Demo, get_experiment

    experiment = get_experiment(name)
    parser = _run_parser(experiment)
    args = vars(parser.parse_args(argv))
    from divekit.experiments.runner import new_run_dir, run_experiment  # torch: not needed for --help
    from divekit.train import distributed

    out, no_progress, nproc, fsdp = args.pop("out"), args.pop("no_progress"), args.pop("nproc"), args.pop("fsdp")
    if nproc < 1:
        parser.error(f"--nproc must be at least 1, got {nproc}")
    try:
        options = experiment.make_options(**args)
    except ValueError as e:
        parser.error(str(e))
    if nproc > 1 and isinstance(experiment, Demo):
        parser.error(f"--nproc: {name} is a demonstration; it runs in one process")
    if nproc > 1 and hasattr(options, "batch_size"):
        try:
            distributed.check_batch_size(options.batch_size, nproc)
        except ValueError as e:
            parser.error(str(e))
    if nproc > 1 and not distributed.under_torchrun():  # start this command again in nproc processes
        from divekit.experiments.runner import remove_if_unstarted

        run_dir = new_run_dir(out, experiment, options)
        try:
            with _interrupt_message(run_dir):
                distributed.launch(["run", name, *argv], nproc, run_dir, debug=debug)
        except BaseException:
            remove_if_unstarted(run_dir)  # stopped before the first checkpoint: as in one process
            raise
        return 0
    distributed.start(fsdp=fsdp)
    run_dir = distributed.launched_run_dir() or new_run_dir(out, experiment, options)
    with _interrupt_message(run_dir, checkpoints=not isinstance(experiment, Demo)):
        run_experiment(experiment, options, run_dir, progress=not no_progress)
    distributed.finish()
    return 0


def _cmd_resume(run_dir: str, argv: Sequence[str], debug: bool = False) -> int:
    """``divekit resume RUN_DIR [--epochs N ...]``: the options a resume may change, with the run's values."""
    from pathlib import Path

    from divekit.experiments.parts import RESUMABLE
    from divekit.experiments.runner import read_run_config, resume_run
    from divekit.train import distributed

    experiment, record = read_run_config(Path(run_dir))
    parser = _run_parser(experiment, only=RESUMABLE, prog=f"{PROG} resume {run_dir}", defaults=record["config"])
    known, unknown = parser.parse_known_args(argv)
    fixed = [a.split("=")[0] for a in unknown if a.split("=")[0].removeprefix("--").replace("-", "_") in record["config"]]
    if fixed:  # an option of the run that a resume cannot change: say so, rather than "unrecognized"
        parser.error(f"{fixed[0]} cannot change when a run resumes (it shapes the model or the data); a resume may "
                     f"change {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)}")
    args = vars(parser.parse_args(argv))
    no_progress, nproc, fsdp = args.pop("no_progress"), args.pop("nproc"), args.pop("fsdp")
    if nproc < 1:
        parser.error(f"--nproc must be at least 1, got {nproc}")
    batch_size = args.get("batch_size", record["config"].get("batch_size"))
    if nproc > 1 and isinstance(batch_size, int):
        try:
            distributed.check_batch_size(batch_size, nproc)
        except ValueError as e:
            parser.error(str(e))
    with _interrupt_message(Path(run_dir)):
        if nproc > 1 and not distributed.under_torchrun():
            distributed.launch(["resume", run_dir, *argv], nproc, Path(run_dir), debug=debug)
            return 0
        distributed.start(fsdp=fsdp)
        resume_run(run_dir, args, progress=not no_progress)
    distributed.finish()
    return 0


def _cmd_predict(args) -> int:
    """``divekit predict RUN_DIR INPUT...``: one line per input (or JSON with --json)."""
    import json

    from divekit.predict import load

    predictor = load(args.run_dir, weights=args.weights, device=args.device)
    for name, (*_, default, kinds, _) in PREDICT_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif predictor.kind not in kinds:
            raise ValueError(f"--{name.replace('_', '-')} is for {' and '.join(RUN_KINDS[k] for k in kinds)} runs; "
                             f"{args.run_dir} is {_with_article(RUN_KINDS.get(predictor.kind, predictor.kind))} run")
    if predictor.kind == "images":
        rows = predictor.predict(args.inputs, top_k=args.top_k)
    elif predictor.kind == "detection":
        rows = predictor.predict(args.inputs, min_score=args.min_score)
    elif predictor.kind == "table":
        if len(args.inputs) != 1:
            raise ValueError(f"{args.run_dir} predicts the rows of one CSV table; pass one file, got {len(args.inputs)}")
        rows = predictor.predict(args.inputs[0], top_k=args.top_k)
    elif predictor.kind == "text":
        rows = [{"input": text, "text": predictor.predict(text, num_preds=args.num_preds)} for text in args.inputs]
    elif predictor.kind == "translation":
        rows = [{"input": text, "translation": predictor.predict(text, beam_size=args.beam_size)} for text in args.inputs]
    else:
        rows = predictor.predict()  # refuses, saying what the run can do
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if "objects" in row:
            objects = row["objects"]
            found = "; ".join(f"{o['class']} {o['score']:.1%} at ({', '.join(f'{v:.0f}' for v in o['box'])})"
                              for o in objects[:SHOWN_OBJECTS])
            more = f"; {len(objects) - SHOWN_OBJECTS} more (--json lists them all)" if len(objects) > SHOWN_OBJECTS else ""
            print(f"{row['input']}: {found + more or f'no object scoring {args.min_score:.0%} or more'}")
        elif "top" in row:
            others = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in row["top"][1:])
            print(f"{row['input']}: {row['class']} ({row['probability']:.1%})" + (f"; then {others}" if others else ""))
        else:
            value = next(v for k, v in row.items() if k != "input")
            print(f"{row['input']}: {_format(value)}")
    return 0


def _format(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)  # a price of 110427.31: 110427


@contextlib.contextmanager
def _interrupt_message(run_dir, checkpoints: bool = True):
    """On Ctrl-C, say (on a line of its own, below the progress bar) how to continue the run, or that
    nothing was kept where it stopped before its first checkpoint (its folder is removed then); a
    demonstration (``checkpoints`` False) keeps nothing of an unfinished run."""
    try:
        yield
    except KeyboardInterrupt:
        from pathlib import Path

        from tqdm.auto import tqdm

        from divekit.run_folder import CHECKPOINT_NAME
        from divekit.train import distributed

        if distributed.launched_run_dir() is not None:  # a process of `--nproc N`: its launcher says it, once
            raise
        if (Path(run_dir) / CHECKPOINT_NAME).exists():
            message = f"interrupted; `divekit resume {run_dir}` continues from its last checkpoint"
        elif checkpoints:
            message = ("interrupted before the run's first checkpoint, so nothing was kept: start it again "
                       "(--checkpoint-every SECONDS checkpoints within an epoch)")
        else:
            message = "interrupted, so nothing was kept: start the demonstration again"
        tqdm.write(f"\n{PROG}: {message}", file=sys.stderr)
        raise


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A run stopped by SIGTERM (``kill``, a job scheduler) stops as on Ctrl-C: its lock released, a folder
    with nothing in it removed, and a line that says how to continue."""
    import os
    import signal
    import threading

    def interrupt(signum, frame):
        from divekit.train import distributed  # loaded by now: the run has started

        if distributed.under_torchrun():  # torchrun stops its processes itself: die as without this handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise distributed.Terminated

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    parser = _main_parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        parser.error(f"{argv[0]}: options go after the command: divekit COMMAND ... [options], e.g. "
                     "divekit run NAME --epochs N")
    # `run NAME` and `resume RUN_DIR` take the experiment's own options, so only NAME or RUN_DIR is parsed here.
    run_rest: list[str] = []
    if argv and argv[0] in ("run", "resume") and len(argv) > 1 and not argv[1].startswith("-"):
        argv, run_rest = argv[:2], argv[2:]
    elif argv and argv[0] in ("run", "resume") and len(argv) > 1 and argv[1] not in ("-h", "--help"):
        what = "the experiment's name" if argv[0] == "run" else "the run folder"
        parser.error(f"options go after {what}: divekit {argv[0]} {'NAME' if argv[0] == 'run' else 'RUN_DIR'} "
                     f"[options]")
    if argv[:1] == ["resume"] and argv[1:2] in (["-h"], ["--help"]):  # no run folder: the options in general
        _resume_parser().print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # said with the command's own usage, and what was likely meant
        hint = "; pass the data to evaluate on with --data PATH" if args.command == "evaluate" and \
            not extra[0].startswith("-") else ""
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    setup_logging(quiet=False)
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            with _sigterm_as_interrupt():
                return _cmd_run(args.name, run_rest, debug)
        if args.command == "resume":
            with _sigterm_as_interrupt():
                return _cmd_resume(args.run_dir, run_rest, debug)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "evaluate":
            from divekit.predict import load

            metrics = load(args.run_dir, weights=args.weights, device=args.device).evaluate(args.data)
            print("\n".join(f"{name}: {_format(value)}" for name, value in metrics.items()))
            return 0
        if args.command == "export":
            from pathlib import Path

            from divekit.predict import load

            out = args.out or Path(args.run_dir) / f"model.{args.format}"
            path = load(args.run_dir, weights=args.weights).export(out, args.format)
            print(f"wrote {path}; the model takes its inputs prepared as the \"inputs\" of the run's model.json "
                  "say, which the file holds as metadata too", file=sys.stderr)
            return 0
        if args.command == "report":
            from divekit.report import write_report

            md_path, html_path, markdown = write_report(args.dir)
            print(markdown, end="")
            print(f"\nwrote {md_path} and {html_path}", file=sys.stderr)
            return 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `divekit list | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except (ValueError, KeyError, OSError, RuntimeError, ImportError) as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")
