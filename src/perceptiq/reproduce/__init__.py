"""Paper against ours: the papers' numbers as data, one reproduce target per table and figure of
GRMP-IQA and Gamma, and the report that puts the paper's number beside ours in every cell.

Above ``training`` and ``evaluation`` (it runs recipes and reads their run folders); nothing below
imports it. docs/reproduce.md describes the targets and the report.
"""
from .numbers import PaperNumber, PaperRow, paper_numbers, paper_rows

__all__ = ["PaperNumber", "PaperRow", "paper_numbers", "paper_rows"]
