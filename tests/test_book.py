"""The book's numbers (``experiments/reference/*.json``): every entry belongs to a registered
experiment and impl, cites a classic-edition section inside the experiment's own, names only
options the experiment has, and agrees with the shared reference file where that is present."""

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from divekit.experiments.book import _table, book_results, changed_options, compare, describe, verdict
from divekit.experiments.registry import all_experiments, get_experiment

SECTIONS = json.loads(resources.files("divekit.experiments").joinpath("reference/sections.json").read_text())["sections"]
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "d2l_results.md"
NUMBER = r"\d+(?:\.\d+)*"


def entries():
    for name, impls in _table().items():
        for impl, entry_or_list in impls.items():
            for entry in entry_or_list if isinstance(entry_or_list, list) else [entry_or_list]:
                yield name, impl, entry


def allowed_sections(section: str) -> set[str]:
    """"4.2-4.3" -> {"4.2", "4.3"}; "1.2.3, 3.1.3" -> {"1.2.3", "3.1.3"}; "11.5-11.10" -> 11.5 ... 11.10."""
    allowed = set()
    for part in section.split(","):
        ends = re.findall(NUMBER, part)
        if len(ends) == 2:
            (chapter, first), last = ends[0].rsplit(".", 1), ends[1].rsplit(".", 1)[1]
            allowed |= {f"{chapter}.{n}" for n in range(int(first), int(last) + 1)}
        else:
            allowed |= set(ends)
    return allowed


def test_every_experiment_section_is_a_classic_section():
    for experiment in all_experiments():
        for number in re.findall(NUMBER, experiment.section):
            assert ".".join(number.split(".")[:3]) in SECTIONS, (experiment.name, number)


@pytest.mark.parametrize("name, impl, entry", list(entries()), ids=lambda x: x if isinstance(x, str) else "")
def test_each_book_entry_cites_a_section_of_its_experiment_and_names_its_options(name, impl, entry):
    experiment = get_experiment(name)
    cited = re.match(rf"D2L ({NUMBER})", entry["source"]).group(1)
    assert cited in SECTIONS, f"{name}: the source cites {cited}, which the classic edition does not have"
    assert any(cited == s or cited.startswith(s + ".") for s in allowed_sections(experiment.section)), \
        f"{name} ({experiment.section}) cites D2L {cited}"
    assert impl in ("scratch", "fast")
    defaults = experiment.defaults
    for option, value in entry.get("when", {}).items():
        assert option in defaults, f"{name}: its book entry depends on --{option}, which it does not take"
        experiment.make_options(**{option: value})  # a value the option takes
    for metric in entry["metrics"].values():
        low, high = metric["spread"]
        assert low <= metric["book"] <= high and metric["better"] in ("higher", "lower", "within")


@pytest.mark.skipif(not SHARED_REFERENCE.exists(), reason="the shared reference file is not beside this checkout")
def test_every_cited_section_has_a_row_in_the_shared_reference():
    rows = set()
    for line in SHARED_REFERENCE.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and re.fullmatch(rf"{NUMBER}(?:/{NUMBER})*", cells[1]):
            rows |= set(cells[1].split("/"))
    for name, impl, entry in entries():
        cited = re.match(rf"D2L ({NUMBER})", entry["source"]).group(1)
        assert ".".join(cited.split(".")[:2]) in rows, f"{name}: D2L {cited} has no row in {SHARED_REFERENCE.name}"


def test_the_book_numbers_follow_the_options_that_choose_them():
    """linear-regression: the squared loss with the 1/2 is §3.2's procedure, nn.MSELoss §3.3's."""
    for impl in ("scratch", "fast"):
        assert book_results("linear-regression", impl, {"loss": "squared_loss"})["metrics"]["train_full_loss"]["book"] == 5.1e-05
        assert book_results("linear-regression", impl, {"loss": "mse_loss"})["metrics"]["train_full_loss"]["book"] == 0.000103
    defaults = get_experiment("linear-regression").defaults
    assert changed_options(defaults, {**defaults, "loss": "mse_loss"}, "linear-regression", "fast") == {}
    assert changed_options(defaults, {**defaults, "epochs": 5}, "linear-regression", "fast") == {"epochs": 5}
    assert changed_options(defaults, {**defaults, "seed": 3, "impl": "scratch"}, "linear-regression", "fast") == {}
    (row, _) = compare("linear-regression", "fast", {"train_full_loss": 9.9e-05, "max_abs_param_error": 1e-3},
                       {"loss": "mse_loss"})
    assert row["reached"] and row["book"] == 0.000103


def test_descriptions_come_from_the_book_numbers_or_the_docstring():
    assert describe("lenet", "fast") == "book: test_acc 0.779 (builds 0.7715–0.821)"
    assert describe("gd-trajectories", "fast") == "book: x_eta0.2 0.06047"  # a deterministic number has no spread
    assert get_experiment("lenet").description == "book: test_acc 0.779 (builds 0.7715–0.821)"
    assert get_experiment("rnn-scratch").description == "book: train_perplexity 1 (builds 1–1.15)"  # widened as printed
    assert get_experiment("activations").description.startswith("The plots of ReLU, sigmoid and tanh")


def test_a_metric_whose_builds_reach_down_to_zero_is_shown_but_not_compared():
    from divekit.experiments.book import compare

    rows = {r["metric"]: r for r in compare("seq2seq", "fast", {"bleu_go": 0.0, "bleu_i_lost": 0.0},
                                            {"loss_reduction": "book"})}
    assert rows["bleu_go"]["spread"][0] == 0 and rows["bleu_go"]["reached"] is None  # 0 to 1: any BLEU "reaches" it
    assert rows["bleu_i_lost"]["reached"] is False  # every build translated "i lost ." perfectly: a real check
    assert verdict(rows["bleu_go"]) == "not judged" and verdict(rows["bleu_i_lost"]) == "not reached"
    assert verdict({**rows["bleu_i_lost"], "reached": None}) == "not compared"  # a run off the book's settings
    assert verdict({**rows["bleu_i_lost"], "reached": None, "ours": None}) == "not measured"


def test_a_run_in_bf16_or_with_another_decoding_is_not_held_to_the_book_but_another_prefix_is():
    for name, change, changed in (("linear-regression", {"precision": "bf16"}, True),
                                  ("rnn", {"prefix": "the ", "num_preds": 100}, False),  # only the text it shows
                                  ("bahdanau", {"heatmap_sentence": "go ."}, False),
                                  ("seq2seq", {"beam_size": 2}, True),  # the BLEU the book prints
                                  ("optimizers-airfoil", {"runs": "gd"}, False),  # which runs, not how
                                  ("optimizers-airfoil", {"epochs": 1}, True)):
        experiment = get_experiment(name)
        defaults = experiment.make_options().to_dict()
        found = changed_options(defaults, {**defaults, **change}, name, "fast", experiment.display_options)
        assert bool(found) == changed, (name, found)


def test_deterministic_counts_and_the_overfitting_measures_must_land_inside_the_books_range():
    """More lines than the book's 3,221 is not better; neither is a larger ||w|| without weight decay."""
    assert not compare("timemachine-stats", "fast", {"lines": 4000})[0]["reached"]
    rows = {r["metric"]: r for r in compare("weight-decay", "fast", {"norm_w_no_decay": 1000.0, "norm_w_decay": 0.36},
                                            {"loss": "squared_loss"})}
    assert rows["norm_w_no_decay"]["reached"] is False and rows["norm_w_decay"]["reached"] is True


def test_an_experiment_the_book_ran_one_way_holds_both_twins_to_it():
    for name in ("alexnet", "densenet", "rnn", "bi-rnn", "polynomial-fit"):
        assert book_results(name, "scratch") == book_results(name, "fast") is not None, name
    assert book_results("rnn-scratch", "fast", {"random_sampling": False}) is not None
    assert book_results("mlp", "scratch") != book_results("mlp", "fast")  # two sections, two entries
