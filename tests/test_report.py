"""``divekit report``'s HTML page: the headline table first, every figure of every run inlined, the
runs of one experiment overlaid, demonstrations named as such; checked by parsing the page and,
where Chromium is installed, by rendering it in a headless browser."""

import base64
import io
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import divekit
from divekit.cli import main
from divekit.report import read_history, render_value, write_report
from divekit.viz.curves import plot_runs

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


class Page(HTMLParser):
    """The parts of the report a test looks at: every start tag in order (with its attributes, the
    section it is in, and the index of the table it is in), and the visible text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.text, self.section, self.tables, self.depth, self.outer = [], [], None, 0, 0, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        if tag == "table":
            if not self.depth:
                self.outer, self.tables = self.tables, self.tables + 1
            self.depth += 1
        self.tags.append((tag, attrs, self.section, self.outer if self.depth else None))

    def handle_endtag(self, tag):
        if tag == "table":
            self.depth -= 1

    def handle_data(self, data):
        self.text.append(data)

    def images(self, section=None):
        return [a for t, a, s, _ in self.tags if t == "img" and (section is None or s == section)]


def png_bytes(img_attrs) -> bytes:
    prefix = "data:image/png;base64,"
    assert img_attrs["src"].startswith(prefix)
    return base64.b64decode(img_attrs["src"][len(prefix):])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A folder of small real runs: linear-regression twice (both impls, one epoch), and the
    demonstrations loss-functions and conv-edge; with its report written."""
    out = tmp_path_factory.mktemp("runs")
    for args in (["linear-regression", "--impl", "scratch", "--epochs", "1"],
                 ["linear-regression", "--impl", "fast", "--epochs", "1"],
                 ["loss-functions"], ["conv-edge"]):
        assert main(["run", *args, "--out", str(out), "--no-progress"]) == 0
    md_path, html_path, _ = write_report(out)
    return out, md_path.read_text(), html_path.read_text()


def test_a_folder_of_runs_without_book_numbers_says_so_instead_of_an_empty_table(tmp_path):
    assert main(["run", "activations", "--out", str(tmp_path), "--no-progress"]) == 0
    md_path, html_path, _ = write_report(tmp_path)
    markdown = md_path.read_text()
    by_experiment = markdown.split("## By experiment\n\n", 1)[1].split("\n## ", 1)[0]
    assert by_experiment.strip() == "No run here is compared with a number the book publishes."
    assert "No run here is compared with a number the book publishes." in html_path.read_text()


def test_the_headline_table_comes_first_with_one_row_per_compared_experiment(report):
    _, _, text = report
    page = Page(text)
    first_table = next(i for i, (t, *_) in enumerate(page.tags) if t == "table")
    first_img = next(i for i, (t, *_) in enumerate(page.tags) if t == "img")
    assert page.tags[first_table][1]["class"] == "headline" and first_table < first_img
    assert not any(t == "section" for t, *_ in page.tags[:first_table])
    rows = [a for t, a, _, n in page.tags if t == "tr" and n == 0 and "data-experiment" in a]
    assert [r["data-experiment"] for r in rows] == ["linear-regression", "conv-edge"]  # by section: 3.1, 6.2
    badges = [a["class"] for t, a, _, n in page.tags if t == "span" and n == 0 and "badge" in a.get("class", "")]
    # the linear-regression runs changed --epochs: grey "not compared", never red; conv-edge kept the book's settings
    assert badges == ["badge not-compared", "badge not-compared", "badge reached"]
    assert "changed the book's settings: --epochs 1" in "".join(page.text)


def test_every_png_of_every_run_is_inlined_and_every_run_has_its_place(report):
    out, _, text = report
    page = Page(text)
    inlined = [png_bytes(a) for a in page.images()]
    runs = sorted(p.parent for p in out.rglob("summary.json"))
    pngs = sorted(p for run in runs for p in run.glob("*.png"))
    assert {p.name for p in pngs} == {"curves.png", "losses.png", "loss.png"}
    for png in pngs:
        assert png.read_bytes() in inlined, png
    ids = {a.get("id") for t, a, *_ in page.tags if t == "article"}
    assert ids == {f"run-{run.name}" for run in runs}
    assert len(inlined) == len(pngs) + 1  # and the overlay


def test_the_runs_of_an_experiment_are_overlaid_in_one_figure(report):
    out, _, text = report
    page = Page(text)
    section = [(t, a) for t, a, s, _ in page.tags if s == "exp-linear-regression"]
    overlays = [a for t, a in section if t == "figure" and a.get("class") == "overlay"]
    assert len(overlays) == 1
    overlay = png_bytes(page.images("exp-linear-regression")[0])
    assert overlay not in {p.read_bytes() for p in out.rglob("*.png")}
    assert Image.open(io.BytesIO(overlay)).size[0] > 300
    assert not page.images("exp-conv-edge")[0]["alt"].startswith("training curves of")  # one run: nothing to overlay


def test_demonstrations_say_so_and_every_run_is_in_the_markdown(report):
    out, markdown, text = report
    visible = "".join(Page(text).text)
    assert "0 epochs" not in visible and "impl scratch · 1 epoch ·" in visible
    assert visible.count("demonstration") >= 2
    for run in (p.parent.name for p in out.rglob("summary.json")):
        assert f"| {run} |" in markdown, run  # loss-functions has no book number and no epochs: still listed
    loss_rows = [line for line in markdown.splitlines() if line.startswith("| loss-functions-")]
    assert len(loss_rows) == 6 and all("| demonstration | " in line for line in loss_rows)
    assert "| l2_gradient_at_max | 3 |" in loss_rows[1]
    assert all("| demonstration | " in line for line in markdown.splitlines() if line.startswith("| conv-edge-"))


def test_nested_results_read_as_tables_not_as_python():
    out = render_value({"kernel": [[1.00633, -0.966]], "folds": [{"fold": 1, "rmse": 0.17}, {"fold": 2, "rmse": 0.18}],
                        "tokens": ["a", "b"], "note": "x < y"})
    assert "[[" not in out and "{'" not in out and "x &lt; y" in out
    page = Page(out)
    assert [t for t, *_ in page.tags].count("table") == 3  # the mapping, the kernel's grid, the folds' records
    assert "1.006" in page.text and "-0.966" in page.text
    assert page.text[page.text.index("folds") + 1:][:2] == ["fold", "rmse"]  # the records' keys head their table
    assert "<details>" in render_value(list(range(13))) and "<details>" not in render_value(list(range(12)))


def test_read_history_takes_per_epoch_tables_only(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,train_loss,test_acc\n1,0.5,\n2,0.25,0.9\n")
    assert read_history(path) == [{"epoch": 1.0, "train_loss": 0.5},
                                  {"epoch": 2.0, "train_loss": 0.25, "test_acc": 0.9}]
    tables = ("fold,epoch,train_loss\n1,1,0.5\n", "epoch,loss\n1,0.5\n1,0.4\n", "epoch,word\n1,the\n", "epoch,loss\n")
    for text in tables:
        path.write_text(text)
        assert read_history(path) is None, text
    assert read_history(tmp_path / "missing.csv") is None


def test_plot_runs_draws_one_panel_per_metric_and_one_line_per_run():
    histories = {"scratch": [{"epoch": 1, "train_loss": 1.0, "seconds": 2.0}, {"epoch": 2, "train_loss": 0.5}],
                 "fast": [{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5, "examples_per_s": 9.0}]}
    fig = plot_runs(histories)
    panels = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in fig.axes}
    assert panels == {"train loss": ["scratch", "fast"], "test acc": ["fast"]}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["scratch", "fast"]
    styles = [line.get_linestyle() for line in fig.axes[0].get_lines()]
    assert styles[0] != styles[1]  # twins that agree exactly stay both visible
    with pytest.raises(ValueError, match="at least one run"):
        plot_runs({})
    with pytest.raises(ValueError, match="no metric to plot"):
        plot_runs({"a": [{"epoch": 1, "seconds": 1.0}]})


def test_user_text_with_dollar_signs_is_drawn_as_text_not_tex(tmp_path):
    """A --data path, class or file name like 'price_$x^_$' broke the report (matplotlib read it as TeX)."""
    import torch

    from divekit.viz.detection import show_detections
    from divekit.viz.images import save_figure, show_images

    odd = "price_$x^_$"
    figures = [plot_runs({f"--data {odd}.csv": [{"epoch": 1, "train_loss": 1.0}]}, title=odd),
               show_images(torch.rand(2, 3, 8, 8), 1, 2, titles=[odd, "cat$_$"]),
               show_detections(torch.rand(1, 3, 16, 16), [{"boxes": torch.tensor([[0.1, 0.1, 0.6, 0.6]]),
                                                           "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
                               [odd, "other"], title=odd)]  # two classes: the labels name them
    from divekit.viz.curves import plot_history

    figures.append(plot_history([{"epoch": 1, "train_loss": 1.0}], title=odd))
    for i, fig in enumerate(figures):
        assert save_figure(fig, tmp_path / f"{i}.png").stat().st_size > 0
    labels = [t for t in figures[2].axes[0].texts if t.get_text().startswith(odd)]  # "price_$x^_$ 0.90"
    assert labels and not any(t.get_parse_math() for t in labels)
    assert odd in [t.get_text() for t in figures[1].axes[0].texts + [figures[1].axes[0].title]]


def test_the_overlay_figures_need_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from divekit.viz.curves import plot_runs\n"
            "fig = plot_runs({'a': [{'epoch': 1, 'loss': 1.0}], 'b': [{'epoch': 1, 'loss': 2.0}]})\n"
            "fig.savefig(sys.stdout.buffer, format='png')")
    env = {**os.environ, "PYTHONPATH": str(Path(divekit.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"\x89PNG")


def _chromium(*args, tmp_path):
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_the_page_renders_in_a_headless_browser(report, tmp_path):
    out, _, text = report
    # the report has no script; a copy gets one that records, once every image has loaded, how
    # many decoded to a real picture, where --dump-dom shows it
    probe = ("<script>addEventListener('load', () => { const images = [...document.images];"
             " document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;"
             " document.body.dataset.images = images.length;"
             " document.body.dataset.firstTable = document.querySelector('table').className; });</script>")
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe + "</body>"))
    done = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    dom = done.stdout.decode()
    expected = len(Page(text).images())
    assert f'data-decoded="{expected}"' in dom and f'data-images="{expected}"' in dom, done.stderr.decode()[-2000:]
    assert 'data-first-table="headline"' in dom

    shot = tmp_path / "report.png"
    _chromium("--window-size=1280,1600", f"--screenshot={shot}", (out / "report.html").as_uri(), tmp_path=tmp_path)
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 1600)
    low, high = image.getextrema()
    assert high - low > 100  # text and figures on the page, not a blank screen


def test_the_headline_prefers_the_latest_run_that_kept_the_books_settings(tmp_path):
    from divekit.cli import main
    from divekit.report import find_runs, headline_rows

    out = tmp_path / "runs"
    assert main(["run", "linear-regression", "--out", str(out), "--no-progress"]) == 0
    assert main(["run", "linear-regression", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    (row,) = headline_rows(find_runs(out))
    assert row["entries"][0]["changed"] == {}  # the full run, not the later one-epoch check
    assert row["entries"][0]["status"] == "reached"


def test_runs_order_by_start_whatever_their_sub_folder_and_each_impl_shows_its_own_book_numbers(tmp_path):
    import json

    from divekit.report import find_runs, headline_rows

    def summary(folder, impl, acc, book, spread):
        path = tmp_path / folder / "summary.json"
        path.parent.mkdir(parents=True)
        reference = [{"metric": "test_acc", "ours": acc, "book": book, "spread": spread, "better": "higher",
                      "reached": acc >= spread[0]}]
        path.write_text(json.dumps({"experiment": "softmax-regression", "section": "3.4-3.7", "title": "t",
                                    "impl": impl, "data": "d", "epochs": 1, "train_seconds": 1.0, "final": {},
                                    "reference": reference}))

    summary("b/softmax-regression-fast-20261207-092038", "fast", 0.57, 0.8281, [0.821, 0.836])  # earlier...
    summary("a/softmax-regression-fast-20261207-092055", "fast", 0.83, 0.8281, [0.821, 0.836])  # ...than this one
    summary("a/softmax-regression-scratch-20261207-092000", "scratch", 0.80, 0.836, [0.794, 0.836])
    runs = find_runs(tmp_path)
    assert [path.name[-6:] for path, _ in runs] == ["092000", "092038", "092055"]
    (row,) = headline_rows(runs)
    assert row["ours"] == "0.8 (scratch) / 0.83 (fast)"  # the latest fast run, though its sub-folder sorts first
    assert row["book"] == "0.836 (scratch) / 0.8281 (fast)"
    assert row["builds"] == "0.794–0.836 (scratch) / 0.821–0.836 (fast)"


def test_runs_of_unknown_experiments_and_unfinished_runs_are_named_not_fatal(tmp_path, caplog):
    import json as json_module

    from divekit.report import find_runs

    renamed, unfinished, kept = (divekit.run("linear-regression", epochs=1, out=tmp_path, progress=False).run_dir
                                 for _ in range(3))
    summary = json_module.loads((renamed / "summary.json").read_text())
    (renamed / "summary.json").write_text(json_module.dumps({**summary, "experiment": "linreg-old"}))
    (unfinished / "summary.json").unlink()  # as a run killed before its end
    with caplog.at_level("WARNING", logger="divekit"):
        assert [run for run, _ in find_runs(tmp_path)] == [kept]
        write_report(tmp_path)  # one unknown experiment no longer stops the whole report
    assert f"skipped {renamed}: its experiment 'linreg-old' is not one this divekit has" in caplog.text
    assert f"left out {unfinished}: not finished (still training, stopped or failed); `divekit resume " \
           f"{unfinished}` finishes a stopped run" in caplog.text


def test_a_single_epoch_is_one_tick_not_fractions():
    from divekit.viz.curves import plot_history

    for fig in (plot_history([{"epoch": 1, "train_loss": 0.5}]), plot_runs({"a": [{"epoch": 1, "train_loss": 0.5}]})):
        assert list(fig.axes[0].get_xticks()) == [1]
    assert list(plot_history([{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)]).axes[0].get_xticks()) != [1]


def test_a_report_of_one_run_folder_names_the_run(tmp_path):
    run = divekit.run("linear-regression", epochs=1, out=tmp_path, progress=False).run_dir
    _, html_path, markdown = write_report(run)
    assert f"| {run.name} |" in markdown and "| . |" not in markdown
    assert f"id='run-{run.name}'" in html_path.read_text() or f'id="run-{run.name}"' in html_path.read_text()
