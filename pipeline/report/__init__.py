"""Evaluation reports: DVC plot tables (CSV), PNG figures and a Markdown page beside the paper's numbers.

- :mod:`pipeline.report.run`: one evaluation run, inputs to written files (the evaluate stage calls it).
- :mod:`pipeline.report.evaluation`: the label space of classes.parquet; metrics from the tables.
- :mod:`pipeline.report.plots`, :mod:`pipeline.report.markdown`: the figures and the page.
"""
from pipeline.report.markdown import PAPER, evaluation_markdown
from pipeline.report.plots import choose_pr_classes, long_tail_rows, save_long_tail_png, save_pr_png, write_csv

__all__ = ["PAPER", "evaluation_markdown", "choose_pr_classes", "long_tail_rows", "save_long_tail_png",
           "save_pr_png", "write_csv"]
