"""The papers' numbers stored in perceptiq.reproduce: each value is read from its source line (always
checked, in the repository alone), and each source line is the paper's (checked against the paper
texts when they are present: ../shared/papers next to the checkout, or $PERCEPTIQ_PAPERS)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from perceptiq.reproduce.numbers import (PAPER_FILES, check_row_against_source, check_source_in_paper,
                                         find_paper_texts, paper_numbers, paper_rows)

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = [p for p in [os.environ.get("PERCEPTIQ_PAPERS"), REPO.parent / "shared" / "papers"] if p]


def test_every_value_is_read_from_its_source_line():
    rows = paper_rows()
    assert len(rows) >= 50 and {r.paper for r in rows} == set(PAPER_FILES)
    problems = [p for row in rows for p in check_row_against_source(row)]
    assert not problems, "\n".join(problems)


def test_the_source_check_catches_a_wrong_value_and_a_wrong_order():
    row = next(r for r in paper_rows("GRMP-IQA") if r.table == "3")
    wrong = dataclasses.replace(row, texts=("0.765", "0.790", "0.782", "0.813", "0.809", "0.935"))
    assert any("0.813" in p for p in check_row_against_source(wrong))
    swapped = dataclasses.replace(row, texts=("0.790", "0.765", *row.texts[2:]))
    assert check_row_against_source(swapped)
    inside = dataclasses.replace(row, texts=("0.76", *row.texts[1:]))      # a prefix of 0.765 is no match
    assert check_row_against_source(inside)
    mangled = next(r for r in paper_rows("GRMP-IQA") if r.table == "4" and 0 in r.printed)
    assert not check_row_against_source(mangled)
    assert check_row_against_source(dataclasses.replace(mangled, texts=("0.767", *mangled.texts[1:])))


def test_lookup_by_fields():
    (livec50,) = paper_numbers("GRMP-IQA", "1", dataset="livec", shots=50)
    assert livec50.value == 0.836 and livec50.get("metric") == "srcc"
    assert len(paper_numbers("Gamma", "1")) == 3 * (14 + 10)
    assert [n.value for n in paper_numbers("Gamma", "13", variant="mixed12")] == [0.818]   # '-' cells left out
    assert {n.get("layers") for n in paper_numbers("Gamma", "5", metric="params_m")} == {0, 4, 6, 8, 12}


@pytest.mark.parametrize("paper", list(PAPER_FILES))
def test_every_source_line_is_in_the_paper(paper):
    texts = find_paper_texts(CANDIDATES)
    if paper not in texts:
        pytest.skip(f"the text of {paper} is not available (looked in {', '.join(map(str, CANDIDATES))}; "
                    "a clean clone has no ../shared/papers): only the in-repository check ran")
    text = texts[paper].read_text(encoding="utf-8")
    missing = [f"Table {r.table} '{r.row}': {r.source!r}" for r in paper_rows(paper) if not check_source_in_paper(r, text)]
    assert not missing, "\n".join(missing)
