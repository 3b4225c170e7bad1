"""Evaluation reports: DVC plot tables (CSV), PNG figures and a Markdown page beside the paper's numbers."""
from pipeline.report.markdown import PAPER, evaluation_markdown
from pipeline.report.plots import choose_pr_classes, long_tail_rows, save_long_tail_png, save_pr_png, write_csv

__all__ = ["PAPER", "evaluation_markdown", "choose_pr_classes", "long_tail_rows", "save_long_tail_png",
           "save_pr_png", "write_csv"]
