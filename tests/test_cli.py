"""The command line: each subcommand, and bad arguments as clear errors rather than tracebacks."""

import copy
import json

import pytest
import torch
from conftest import write_image_folder
from PIL import Image

from divekit import io
from divekit.cli import main
from divekit.experiments.parts import TrainOptions
from divekit.experiments.registry import all_experiments, get_experiment
from divekit.options import kinds, parse_value


def run_dirs(out):
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_list_shows_every_experiment_with_section_and_data(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for e in all_experiments():
        assert e.name in out and f"§{e.section}" in out
    assert "Fashion-MNIST" in out
    classifier = next(line for line in out.splitlines() if line.startswith("image-classifier "))
    assert classifier.count("An image classifier for your own folder") == 1  # no book number: the title alone
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["fcn"].endswith("(a demonstration: one process)") and "demonstration" not in lines["lenet"]


def test_a_demonstrations_help_offers_no_processes_and_refuses_them_with_the_reason(capsys):
    for name, offered in (("fcn", False), ("lenet", True)):
        with pytest.raises(SystemExit):
            main(["run", name, "--help"])
        assert ("--nproc" in capsys.readouterr().out) == offered
    with pytest.raises(SystemExit):
        main(["run", "fcn", "--nproc", "2"])
    assert "fcn is a demonstration; it runs in one process" in capsys.readouterr().err


def test_an_experiment_without_a_book_number_says_its_title_once_in_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "image-classifier", "--help"])
    assert " ".join(capsys.readouterr().out.split()).count("An image classifier for your own folder") == 1


def test_run_writes_a_complete_run_folder_and_reaches_the_book(tmp_path, capsys):
    assert main(["run", "linear-regression", "--impl", "scratch", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.csv", "summary.json", "curves.png", "checkpoint.pt", "model.json",
                                             ".lock"}  # the lock a running process holds
    summary = json.loads((run / "summary.json").read_text())
    assert summary["experiment"] == "linear-regression" and summary["epochs"] == 3
    assert summary["results"]["max_abs_param_error"] < 2e-3
    assert all(row["reached"] for row in summary["reference"])
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == 0.03
    assert "train_full_loss: ours" in capsys.readouterr().err


def test_the_concise_sections_loss_is_held_to_the_concise_sections_numbers(tmp_path):
    assert main(["run", "linear-regression", "--loss", "mse_loss", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    row = next(r for r in summary["reference"] if r["metric"] == "train_full_loss")
    assert summary["comparable"] and row["book"] == 0.000103 and row["reached"]  # §3.3's nn.MSELoss, about 2x §3.2's


def test_overrides_reach_the_config(tmp_path):
    assert main(["run", "linear-regression", "--epochs", "1", "--lr", "0.01", "--batch-size", "50", "--seed", "7",
                 "--num-examples", "200", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["epochs"], config["lr"], config["batch_size"], config["seed"], config["num_examples"]) == (1, 0.01, 50, 7, 200)
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--epochs", "three"], "argument --epochs: must be an integer, got 'three'"),
    (["--limit", "abc"], "argument --limit: must be an integer or none, got 'abc'"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--lr", "-1e-3"], "--lr must be positive, got -0.001"),  # a number, not an option (argparse 3.11 took it for one)
    (["--impl", "slow"], "--impl must be one of scratch, fast, got 'slow'"),
    (["--precision", "fp16"], "--precision must be one of fp32, bf16"),
    (["--optimizer", "sgdd"], "unknown optimizer 'sgdd'"),
    (["--compile", "maybe"], "must be true or false"),
    (["--frobnicate", "1"], "unrecognized arguments: --frobnicate"),
])
def test_bad_run_options_are_one_line_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "linear-regression", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir()), "a rejected run must not leave a folder"


@pytest.mark.parametrize("prefix", ["", "42!", "  ", "é"])
def test_a_prefix_without_letters_is_refused_before_training(prefix, tmp_path, capsys):
    """The sample is written after training from the cleaned prefix: one with no letters trained the whole run,
    then failed (and failed again on resume)."""
    with pytest.raises(SystemExit):
        main(["run", "rnn", "--prefix", prefix, "--out", str(tmp_path)])
    assert f"--prefix {prefix!r} holds no letters, and the model reads letters only" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, usage, message", [
    (["evaluate", "RUN", "houses.csv"], "divekit evaluate", "unrecognized arguments: houses.csv; pass the data to "
                                                            "evaluate on with --data PATH"),
    (["export", "RUN", "onnx"], "divekit export", "unrecognized arguments: onnx"),
    (["predict", "RUN", "a.png", "--foo"], "divekit predict", "unrecognized arguments: --foo"),
    (["--epochs", "1", "run", "lenet"], "divekit", "--epochs: options go after the command"),
    (["predict", "RUN", "a.png", "--min-score", "-0.1"], "divekit predict", "-0.1 is not in [0.0, 1.0]"),  # a number
])
def test_a_commands_wrong_arguments_get_its_own_usage_and_a_hint(argv, usage, message, capsys):
    """They got the top-level usage and no hint ('invalid choice: 1' for an option before the command)."""
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert f"usage: {usage} " in err and message in err


def test_a_bare_bool_flag_means_true():
    from divekit.cli import _run_parser
    from divekit.experiments.registry import get_experiment

    parser = _run_parser(get_experiment("rnn-scratch"))
    assert parser.parse_args(["--random-sampling"]).random_sampling is True
    assert parser.parse_args(["--random-sampling", "false", "--epochs", "2"]).random_sampling is False
    assert parser.parse_args(["--random-sampling", "--epochs", "2"]).epochs == 2
    assert not hasattr(parser.parse_args([]), "random_sampling")  # unset: the config's default applies


def test_unknown_experiment_suggests_close_names(capsys):
    assert main(["run", "linear-regresion"]) == 1
    err = capsys.readouterr().err
    assert "no experiment named 'linear-regresion'; did you mean linear-regression" in err


def test_unavailable_device_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["run", "linear-regression", "--device", "cuda", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "CUDA is not available here; use --device cpu" in capsys.readouterr().err


def test_run_help_lists_the_experiments_options_with_book_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "linear-regression", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--num-examples" in out and "(default: 0.03)" in out and "D2L 3.1-3.3" in out


def test_resume_help_without_a_run_says_what_a_resume_does_and_what_it_may_change(capsys):
    from divekit.experiments.parts import RESUMABLE

    assert main(["resume", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: divekit resume RUN_DIR [options]") and "Continue a run from its last checkpoint" in out
    assert all(f"--{name.replace('_', '-')} " in out for name in RESUMABLE) and "--nproc N" in out
    assert "(default: the run's)" in out and "`divekit resume RUN_DIR --help` shows the run's values" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    assert "`divekit run NAME --help` lists them" in " ".join(capsys.readouterr().out.split())


def test_resume_extends_a_run_with_explicit_changes_and_records_them(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    assert main(["resume", str(run), "--no-progress"]) == 1  # finished: nothing to continue
    assert "has finished its 2 epochs; pass --epochs N (more than 2)" in capsys.readouterr().err
    assert main(["resume", str(run), "--epochs", "4", "--lr", "0.01", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 4
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 4
    record = io.read_json(run / "config.json")
    assert record["config"]["epochs"] == 4 and record["config"]["lr"] == 0.01
    assert record["changes"] == [{"after_epoch": 2, "step": 0, "epochs": 4, "lr": 0.01}]
    checkpoint = io.load(run / "checkpoint.pt")
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)  # applied, not only recorded
    with pytest.raises(SystemExit):
        main(["resume", str(run), "--batch-size", "5"])
    assert "--batch-size cannot change when a run resumes (it shapes the model or the data)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["resume", str(run), "--batch-sise", "5"])
    assert "unrecognized arguments: --batch-sise 5" in capsys.readouterr().err  # a typo stays a typo


def test_resume_refuses_a_config_edited_by_hand(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    config = io.read_json(run / "config.json")
    config["config"]["lr"] = 0.5
    io.write_json(run / "config.json", config)
    assert main(["resume", str(run), "--epochs", "3", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "config.json was edited since the last checkpoint (lr: 0.03 -> 0.5)" in err and "--lr 0.5" in err


def test_a_resume_that_stops_before_a_checkpoint_leaves_the_run_resumable(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    before = io.read_json(run / "config.json")
    assert main(["resume", str(run), "--epochs", "3", "--lr", "1e38", "--no-progress"]) == 1  # diverges at once
    assert "loss became" in capsys.readouterr().err
    assert io.read_json(run / "config.json") == before  # as its last checkpoint: the failed changes undone
    assert main(["resume", str(run), "--epochs", "3", "--lr", "0.01", "--no-progress"]) == 0
    assert io.read_json(run / "config.json")["changes"] == [{"after_epoch": 1, "step": 0, "epochs": 3, "lr": 0.01}]


def test_a_resume_killed_before_its_first_checkpoint_is_undone_by_the_next(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    before = io.read_json(run / "config.json")
    killed = copy.deepcopy(before)  # what a resume writes before training, then SIGKILL: no checkpoint since
    killed["config"].update(epochs=50, lr=0.01)
    killed["changes"] = [{"after_epoch": 1, "step": 0, "epochs": 50, "lr": 0.01}]
    io.write_json(run / "config.json", killed)
    assert main(["resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "its changes (--epochs 50, --lr 0.01) are undone: pass them again" in capsys.readouterr().err
    record = io.read_json(run / "config.json")
    assert record["config"]["lr"] == before["config"]["lr"] and record["changes"] == [
        {"after_epoch": 1, "step": 0, "epochs": 2}]
    # a hand edit that differs from what the last resume recorded is not taken for it
    edited = io.read_json(run / "config.json")
    edited["config"]["epochs"], edited["config"]["lr"] = 2, 0.5
    edited["changes"][-1] = {"after_epoch": 2, "step": 0, "epochs": 2, "lr": 0.01}
    io.write_json(run / "config.json", edited)
    assert main(["resume", str(run), "--epochs", "3", "--no-progress"]) == 1
    assert "config.json was edited since the last checkpoint (lr: 0.03 -> 0.5)" in capsys.readouterr().err


def test_a_resume_still_training_before_its_first_checkpoint_is_not_undone_by_another(tmp_path, capsys):
    from divekit.experiments.runner import run_lock

    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    training = copy.deepcopy(io.read_json(run / "config.json"))  # resume A has written this and trains
    training["config"].update(epochs=3, lr=0.001)
    training["changes"] = [{"after_epoch": 1, "step": 0, "epochs": 3, "lr": 0.001}]
    io.write_json(run / "config.json", training)
    with run_lock(run):  # A holds the run's lock
        assert main(["resume", str(run), "--no-progress"]) == 1
    assert "is being trained by" in capsys.readouterr().err
    assert io.read_json(run / "config.json") == training  # left as A wrote it


def test_a_resume_of_a_run_still_training_before_its_first_checkpoint_says_it_is_training(tmp_path, capsys):
    from divekit.experiments.runner import run_lock

    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    (run / "checkpoint.pt").unlink()  # as a run in its first epoch
    with run_lock(run):
        assert main(["resume", str(run), "--no-progress"]) == 1
    assert "is being trained by process" in capsys.readouterr().err  # not "stopped before its first checkpoint"
    assert main(["resume", str(run), "--no-progress"]) == 1
    assert "has no checkpoint.pt to resume from (the run stopped before its first checkpoint)" in \
        capsys.readouterr().err


@pytest.mark.parametrize("checkpointed", [False, True])
def test_ctrl_c_says_how_to_continue_or_that_nothing_was_kept(tmp_path, capsys, monkeypatch, checkpointed):
    from divekit.experiments import runner

    def train(experiment, options, run_dir, progress):
        if checkpointed:
            (run_dir / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_train", train)
    assert main(["run", "linear-regression", "--out", str(tmp_path), "--no-progress"]) == 130
    err = capsys.readouterr().err
    if checkpointed:
        (run,) = run_dirs(tmp_path)
        assert f"interrupted; `divekit resume {run}` continues from its last checkpoint" in err
    else:
        assert run_dirs(tmp_path) == [] and "resume" not in err
        assert "interrupted before the run's first checkpoint, so nothing was kept: start it again" in err


def test_resume_refuses_fewer_epochs_than_a_mid_epoch_checkpoint_has_begun(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    checkpoint = io.load(run / "checkpoint.pt")
    io.save({**checkpoint, "epoch": 1, "step": 2}, run / "checkpoint.pt")  # as if stopped within epoch 2
    assert main(["resume", str(run), "--epochs", "1", "--no-progress"]) == 1
    assert "has trained 1 epochs and part of the next; pass --epochs N (more than 1)" in capsys.readouterr().err


def test_a_model_card_edited_by_hand_is_refused_and_a_file_is_no_run_folder(tmp_path, capsys):
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    card = io.read_json(run / "model.json")
    io.write_json(run / "model.json", {**card, "config": {**card["config"], "sigma": 0.5}})
    assert main(["evaluate", str(run)]) == 1
    assert "model.json do not belong together: the model card was edited, or the weights come from another run" \
        in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["run", "linear-regression", "--out", str(tmp_path / "afile"), "--no-progress"]) == 1
    assert f"--out {tmp_path / 'afile'}: {tmp_path / 'afile'} is a file; pass the folder" in capsys.readouterr().err
    assert main(["run", "linear-regression", "--out", str(tmp_path / "afile" / "sub"), "--no-progress"]) == 1
    assert f"--out {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 1
    assert "is not a divekit run folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 1
    assert "predict, evaluate and export take the folder of a training run" in capsys.readouterr().err


def test_options_go_after_the_name_and_are_taken_only_as_spelt_out(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--epochs", "1", "linear-regression"])
    assert "options go after the experiment's name: divekit run NAME [options]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "linear-regression", "--epoch", "1", "--out", str(tmp_path)])
    assert "unrecognized arguments: --epoch 1" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_regression_predictions_print_six_significant_digits():
    from divekit.cli import _format

    assert _format(110427.31) == "110427" and _format(0.1234567) == "0.123457" and _format(3) == "3"


def test_report_writes_markdown_and_self_contained_html(tmp_path, capsys):
    for impl in ("scratch", "fast"):
        main(["run", "linear-regression", "--impl", impl, "--out", str(tmp_path), "--no-progress"])
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    markdown = capsys.readouterr().out
    assert markdown.count("| linear-regression-") == 4  # two metrics for each of two runs
    assert "5.1e-05" in markdown and "4.5e-05–5.5e-05" in markdown
    headline = [line for line in markdown.splitlines() if line.startswith("| linear-regression | 3.1-3.3 |")]
    assert len(headline) == 1 and "(scratch) / " in headline[0] and headline[0].endswith("| yes / yes |")
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # each run's curves.png and the two runs overlaid
    assert "badge reached" in html and "badge not-reached" not in html and "badge not-compared" not in html
    assert (tmp_path / "report.md").read_text().startswith("# divekit runs")


def test_report_gives_each_book_variant_of_an_experiment_its_own_headline():
    from pathlib import Path

    from divekit.experiments.book import compare
    from divekit.report import headline_rows

    def summary(random_sampling, perplexity):
        reference = compare("rnn-scratch", "scratch", {"train_perplexity": perplexity}, {"random_sampling": random_sampling})
        return Path("run"), {"experiment": "rnn-scratch", "section": "8.5", "title": "RNN", "impl": "scratch",
                             "reference": reference}

    rows = headline_rows([summary(False, 1.03), summary(True, 1.39)])
    assert [(r["experiment"], r["ours"], r["book"]) for r in rows] == [
        ("rnn-scratch", "1.03 (scratch)", "1"), ("rnn-scratch --random-sampling", "1.39 (scratch)", "1.5")]


def test_report_of_an_empty_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no finished runs" in capsys.readouterr().err


def test_data_option_on_an_experiment_with_fixed_data_or_without_data(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n1,2,3\n2,3,5\n3,1,4\n4,4,8\n5,0,5\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "linear-regression", "--target", "y", "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2 and "pass it together with --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a demonstration on fixed data shows no --data at all
        main(["run", "kaggle-house", "--data", str(table), "--out", str(tmp_path / "runs")])
    assert "unrecognized arguments: --data" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_linear_regression_on_a_users_csv_table(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 3
    lines = ["x1,x2,x3,price"] + [",".join(f"{v:.6f}" for v in [*row.tolist(), t.item()]) for row, t in zip(X, y)]
    (tmp_path / "houses.csv").write_text("\n".join(lines) + "\n")
    assert main(["run", "linear-regression", "--data", str(tmp_path / "houses.csv"), "--target", "price",
                 "--epochs", "20", "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"] == "houses.csv" and summary["reference"] == []
    assert summary["final"]["val_loss"] < 1e-3
    with pytest.raises(SystemExit) as exit_info:
        main(["resume", str(run), "--help"])  # the run's own data, not the book's
    assert exit_info.value.code == 0
    description = "".join(capsys.readouterr().out.split())  # argparse breaks the long path anywhere
    assert f"(D2L3.1-3.3)on{tmp_path / 'houses.csv'}." in description and "book:" not in description


def test_softmax_regression_on_a_users_image_folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    for cls, brightness in (("dark", 40), ("light", 210)):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = (brightness + torch.randint(-30, 30, (8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(tmp_path / "images" / cls / f"{i}.png")
    assert main(["run", "softmax-regression", "--data", str(tmp_path / "images"), "--epochs", "30", "--lr", "0.5",
                 "--batch-size", "4", "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["val_acc"] == 1.0 and summary["data"] == "images"


def test_bad_user_data_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "images" / "empty").mkdir(parents=True)
    assert main(["run", "softmax-regression", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("divekit: error:") and "Traceback" not in err


def test_parse_value_and_options_validation():
    kind = kinds(TrainOptions)
    assert parse_value(kind["clip_grad"], "none") is None
    assert parse_value(kind["clip_grad"], "1.5") == 1.5
    assert parse_value(kind["compile"], "yes") is True
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        TrainOptions(batch_size=0)
    assert TrainOptions(optimizer="auto").optimizer == "sgd"  # the old name of the --impl's SGD still works
    assert get_experiment("linear-regression").make_options().epochs == 3
    options = get_experiment("resnet").make_options(num_residuals=(1, 1, 1, 1))
    assert options.num_residuals == (1, 1, 1, 1) and parse_value(kinds(type(options))["num_residuals"], "2,2") == (2, 2)
    with pytest.raises(ValueError, match="--lr must be a finite number"):
        get_experiment("linear-regression").make_options(lr=float("nan"))


def test_limit_trains_on_a_subset_and_skips_the_book_comparison(tmp_path, capsys):
    assert main(["run", "linear-regression", "--limit", "50", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["comparable"] is False and summary["changed"] == {"limit": 50}
    assert summary["reference"] and all(row["reached"] is None for row in summary["reference"])
    assert "not compared with the book: this run changed the book's settings (--limit 50)" in capsys.readouterr().err
    assert summary["final"]["examples_per_s"] > 0
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_a_limit_above_the_data_sets_size_is_the_books_run_and_compared_with_the_book(tmp_path, capsys):
    assert main(["run", "linear-regression", "--limit", "1000000", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["comparable"] is True and summary["changed"] == {} and summary["config"]["limit"] == 1000000
    assert summary["reference"] and all(row["reached"] for row in summary["reference"])
    assert "not compared with the book" not in capsys.readouterr().err
    from divekit.experiments.runner import _idle_options, prepare_training

    for limit, idle in ((10_001, ("limit",)), (10_000, ()), (600, ())):  # a language model's: its 10,000 characters
        training = prepare_training("rnn", **{**get_experiment("rnn").tiny, "limit": limit, "device": "cpu"})
        assert _idle_options(training) == idle  # exactly 10,000 kept may be 10,000 of more: a change


def test_a_demo_experiment_writes_results_rows_and_figures(tmp_path):
    from typing import Annotated

    from matplotlib.figure import Figure

    from divekit.experiments.registry import Demo, DemoResult
    from divekit.experiments.runner import run_experiment
    from divekit.options import at_least

    def trajectory(steps: Annotated[int, "steps to take", at_least(1)] = 3, rate: Annotated[float, "shrink"] = 0.6):
        """A geometric trajectory. More text."""
        fig = Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        rows = [{"step": i, "x": 10 * rate ** i} for i in range(steps)]
        return DemoResult(results={"x_final": rows[-1]["x"]}, figures={"trajectory": fig}, rows=rows)

    experiment = Demo(name="demo-test", section="0.0", title="A demo", function=trajectory, data="none")
    assert experiment.description == "A geometric trajectory."
    assert [f.name for f in __import__("dataclasses").fields(experiment.options)] == ["steps", "rate"]
    summary = run_experiment(experiment, experiment.make_options(), tmp_path / "run")
    assert summary["results"] == {"x_final": 10 * 0.6 ** 2} and summary["epochs"] == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.json", "summary.json", "metrics.csv", "trajectory.png",
                                                          ".lock"}
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0] == "step,x"
    with pytest.raises(ValueError, match="--steps must be at least 1, got 0"):
        experiment.make_options(steps=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        experiment.make_options(epochs=3)  # a demo takes only the options its function has

    def no_default(x: int):
        return DemoResult({})

    with pytest.raises(TypeError, match="parameter x needs a default"):
        Demo(name="bad", section="0.0", title="t", function=no_default, data="d").options


def test_synthetic_data_is_independent_of_the_initial_weights():
    """The runner seeds the global generator for the init; data must come from another stream."""
    from divekit.experiments.parts import data_generator

    torch.manual_seed(0)
    init = torch.randn(100)
    data = torch.randn(100, generator=data_generator(0))
    assert abs(torch.corrcoef(torch.stack([init, data]))[0, 1]) < 0.3


def test_a_users_classifier_that_stays_at_chance_is_told_so(tmp_path, capsys):
    for cls in ("cats", "dogs"):  # the same gray picture in both classes: nothing to learn
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(torch.full((8, 8), 128, dtype=torch.uint8).numpy(), mode="L").save(
                tmp_path / "images" / cls / f"{i}.png")
    assert main(["run", "softmax-regression", "--data", str(tmp_path / "images"), "--epochs", "2", "--batch-size", "4",
                 "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "val_acc 0.500 is no better than always answering the commonest class (0.500)" in err
    assert f"try `divekit run image-classifier --data {tmp_path / 'images'}`" in err
    (run,) = run_dirs(tmp_path / "runs")
    assert "has not learned" in json.loads((run / "summary.json").read_text())["warnings"][0]


def test_limit_on_a_users_folder_takes_examples_of_every_class(tmp_path):
    from divekit.experiments.runner import prepare_training

    for cls in ("a_first", "b_second"):  # read class by class: the first 8 would all be a_first
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(torch.full((8, 8), 40 if cls == "a_first" else 200, dtype=torch.uint8).numpy(),
                            mode="L").save(tmp_path / "images" / cls / f"{i}.png")
    data = [prepare_training("softmax-regression", data=str(tmp_path / "images"), limit=6, seed=seed,
                             device="cpu").setup.data for seed in (0, 0, 1)]
    for loaded in data:
        for loader in (loaded.train, loaded.eval):
            assert len(loader.data.y) == 6 and set(loader.data.y.tolist()) == {0, 1}
    assert torch.equal(data[0].train.data.X, data[1].train.data.X)  # the seed's sample, every time
    assert not torch.equal(data[0].train.data.y, data[2].train.data.y) or \
        not torch.equal(data[0].train.data.X, data[2].train.data.X)
    book = prepare_training("softmax-regression", limit=6, device="cpu").setup.data
    full = prepare_training("softmax-regression", device="cpu").setup.data
    assert torch.equal(book.train.data.y, full.train.data.y[:6])  # the book's: its first N, as before


def test_a_convolutional_network_refuses_a_csv_table_before_reading_it(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("x1,x2,label\n1,2,a\n3,4,b\n")
    with pytest.raises(SystemExit):
        main(["run", "lenet", "--data", str(tmp_path / "t.csv"), "--target", "label", "--out", str(tmp_path)])
    assert ("lenet is a convolutional network, which takes images: --data takes a folder of images with one "
            "sub-folder per class; a CSV table trains linear-regression, softmax-regression, mlp or dropout") in \
        capsys.readouterr().err


def test_the_run_names_the_weights_predict_uses_and_predict_an_unfinished_run(tmp_path, capsys):
    write_image_folder(tmp_path / "images", per_class=10)
    assert main(["run", "image-classifier", "--data", str(tmp_path / "images"), "--epochs", "2", "--resize", "28",
                 "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    from divekit.experiments.book import format_value

    best = io.load(run / "best.pt")
    assert (f"best.pt holds epoch {best['epoch']} (val_acc {format_value(best['value'])}): predict, evaluate and export use "
            "it; --weights last takes the last epoch's") in capsys.readouterr().err
    image = str(tmp_path / "images" / "dark" / "0.png")
    assert main(["predict", str(run), image]) == 0
    assert "partly trained" not in capsys.readouterr().err
    io.save({**io.load(run / "checkpoint.pt"), "epoch": 1}, run / "checkpoint.pt")  # as if stopped after epoch 1
    assert main(["predict", str(run), image]) == 0
    assert (f"{run} stopped after 1 of its 2 epochs: these are a partly trained model's answers; `divekit resume "
            f"{run}` finishes the run") in capsys.readouterr().err


def test_a_users_classifier_that_learns_gets_no_warning(tmp_path, capsys):
    write_image_folder(tmp_path / "images", per_class=10)
    assert main(["run", "softmax-regression", "--data", str(tmp_path / "images"), "--epochs", "10", "--lr", "0.5",
                 "--batch-size", "4", "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "no better than always answering" not in capsys.readouterr().err


def test_list_fits_a_terminals_width(monkeypatch, capsys):
    import os
    import shutil

    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(all_experiments()) + 1 and all(len(line) <= 80 for line in lines)
    assert any(line.endswith("…") for line in lines)


def test_version(capsys):
    import divekit

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"divekit {divekit.__version__}"
