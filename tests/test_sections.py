"""Book citations in the source: every ``§N.N.N`` names a section of the classic edition.

The project cites one edition only, the classic one (English 0.17 / Chinese v2), whose numbering
and English titles are in ``divekit/experiments/reference/sections.json`` (chapters, sections and
first-level subsections). A four-level citation such as ``§4.8.1.1`` is checked by its three-level
prefix. Ranges (``§4.2-4.3``) are checked at both ends, lists (``§1.2.3, §3.1.3``) item by item.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from divekit.data import hub

SOURCE = Path(__file__).resolve().parents[1] / "src" / "divekit"
SECTIONS_FILE = SOURCE / "experiments" / "reference" / "sections.json"

NUMBER = r"\d+(?:\.\d+)*"
# one cited section, optionally the end of a range after it: "§9.5", "§4.2-4.3", "§10.2-§10.6"
CITATION = re.compile(rf"§\s*(?P<start>{NUMBER})(?:\s*[-–]\s*§?\s*(?P<end>{NUMBER}))?")
OTHER_EDITION = re.compile(
    r"\b(?:en|v1|d2l-en|1\.0)\s*§|new edition|other edition|newer edition|2nd edition", re.IGNORECASE
)


def load_sections() -> dict[str, str]:
    sections = json.loads(SECTIONS_FILE.read_text(encoding="utf-8"))["sections"]
    return {number: entry["title"] for number, entry in sections.items()}


SECTIONS = load_sections()
ORDER = {number: i for i, number in enumerate(SECTIONS)}


def source_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def citations(text: str) -> list[tuple[str, str | None]]:
    """(start, end or None) of every citation in ``text``."""
    return [(m["start"], m["end"]) for m in CITATION.finditer(text)]


def all_citations() -> list[tuple[str, int, str, str | None]]:
    """(file, line, start, end) of every citation in the source."""
    found = []
    for path in source_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for start, end in citations(line):
                found.append((str(path.relative_to(SOURCE)), lineno, start, end))
    return found


def three_levels(number: str) -> str:
    return ".".join(number.split(".")[:3])


def test_the_section_table_is_the_classic_edition():
    data = json.loads(SECTIONS_FILE.read_text(encoding="utf-8"))
    assert data["edition"].startswith("classic")
    assert len(SECTIONS) == 797
    assert SECTIONS["8.5.4"] == "Prediction"
    assert SECTIONS["8.5.5"] == "Gradient Clipping"
    assert SECTIONS["9.5"] == "Machine Translation and the Dataset"
    assert SECTIONS["10.5"] == "Multi-Head Attention"


def test_the_citation_parser_reads_ranges_and_lists():
    assert citations("(D2L §9.5.4)") == [("9.5.4", None)]
    assert citations("(D2L §4.2-4.3, §4.6)") == [("4.2", "4.3"), ("4.6", None)]
    assert citations("(D2L §10.2-§10.6)") == [("10.2", "10.6")]
    assert citations("(D2L §1.2.3, §3.1.3, §3.4)") == [("1.2.3", None), ("3.1.3", None), ("3.4", None)]
    assert citations("(D2L §9.7.6, eq. 9.7.4)") == [("9.7.6", None)]
    assert citations('f"§{e.section}"') == []


def test_the_source_has_citations_to_check():
    found = all_citations()
    assert len(found) > 200
    assert len({path for path, *_ in found}) > 40


def test_every_citation_names_a_classic_section():
    bad = []
    for path, lineno, start, end in all_citations():
        for number in (start, end):
            if number is None:
                continue
            if len(number.split(".")) > 4 or three_levels(number) not in SECTIONS:
                bad.append(f"{path}:{lineno}: §{number}")
        if end is not None and start in SECTIONS and end in SECTIONS and ORDER[end] <= ORDER[start]:
            bad.append(f"{path}:{lineno}: §{start}-{end} is not a forward range")
    assert not bad, "citations of sections the classic edition does not have:\n" + "\n".join(bad)


def test_no_citation_mentions_another_edition():
    bad = []
    for path in source_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OTHER_EDITION.search(line):
                bad.append(f"{path.relative_to(SOURCE)}:{lineno}: {line.strip()}")
    assert not bad, "the project cites the classic edition only:\n" + "\n".join(bad)


# Words the title of the one section each data set's description cites must contain (any of them).
DATASET_SECTIONS = {
    "fashion-mnist": ("Image Classification Dataset",),
    "mnist": ("Image Classification Dataset",),
    "timemachine": ("Text Preprocessing",),
    "fra-eng": ("Machine Translation",),
    "wikitext-2": ("Pretraining BERT",),
    "kaggle_house": ("House Prices",),
    "ptb": ("word2vec", "Word Embedding"),
    "airfoil": ("Minibatch",),
    "banana-detection": ("Object Detection Dataset",),
    "snli": ("Natural Language Inference and the Dataset",),
    "aclImdb": ("Sentiment Analysis and the Dataset",),
    "d2l-bert.small": ("Fine-Tuning BERT",),
    "d2l-bert.base": ("Fine-Tuning BERT",),
    "cifar-10": ("Image Augmentation",),
    "hotdog": ("Fine-Tuning",),
    "voc2012": ("Semantic Segmentation",),
}


def test_every_data_set_has_an_expected_section():
    assert set(DATASET_SECTIONS) == set(hub.REGISTRY)


@pytest.mark.parametrize("name", sorted(DATASET_SECTIONS))
def test_data_set_description_cites_its_section(name):
    description = hub.REGISTRY[name].description
    cited = citations(description)
    assert len(cited) == 1, f"{name}: {description!r} should cite exactly one section"
    number, end = cited[0]
    assert end is None, f"{name}: cites a range, not one section"
    assert number in SECTIONS, f"{name}: §{number} is not a classic section"
    title = SECTIONS[number]
    assert any(word in title for word in DATASET_SECTIONS[name]), (
        f"{name}: §{number} is {title!r}, expected one of {DATASET_SECTIONS[name]}"
    )
