"""The train stage's live metrics: one DVCLive step per epoch, written while the run goes.

``dvc exp show``, ``dvc plots show`` and the VS Code DVC extension read ``<dir>/metrics.json`` (the latest
epoch) and ``<dir>/plots/metrics/**.tsv`` (one row per epoch) through the top-level ``metrics:`` and
``plots:`` of dvc.yaml. The folder (``logs/live/train`` by default) is a log, not a result: it holds the
throughput, which differs from run to run, so it is git-ignored (under ``logs/``) and no stage output (not
in dvc.lock), and the stage's results (``metrics/train.json``, ``plots/train/history.csv``) stay
byte-identical run to run. DVCLive's timestamps are off all the same.

Library code never sees DVCLive: :mod:`pipeline.training` calls :meth:`LiveMetrics.epoch` through a plain
``on_report`` function (``pipeline.training.launcher.forwarded_reports``).
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DIR = "logs/live/train"  # dvc.yaml's top-level metrics/plots name this folder


# Logged to the summary (metrics.json, `dvc exp show`) only: the same every epoch, no plot.
SUMMARY_ONLY = ("train/effective_global_batch",)


def live_values(report: dict[str, Any]) -> dict[str, float]:
    """The logged values of one epoch's report (rank 0's ``ray.train.report`` metrics, or a history row).

    mAP in percent, as everywhere in ``metrics/`` and ``plots/``; ``images_per_s_per_worker`` is rank 0's rate;
    ``data_wait`` the fraction of the workers' step time spent waiting for the loader.
    """
    values = {"train/loss": report["train_loss"], "train/lr": report["lr"],
              "train/images_per_s_per_worker": report["images_per_s_per_worker"],
              "train/data_wait": report["data_wait"],
              "train/effective_global_batch": report["effective_global_batch"]}
    if report.get("val_map") is not None:
        values["val_map"] = 100.0 * report["val_map"]
    return {k: float(v) for k, v in values.items()}


class LiveMetrics:
    """A DVCLive logger whose step is the epoch (``step`` 0 = epoch 0).

    Args:
        directory: DVCLive's folder (cleared at the start: a run's live files describe that run only).
    """

    def __init__(self, directory: str = DEFAULT_DIR):
        self.directory = directory
        self.live = self._open()

    def _open(self):
        from dvclive import Live

        # save_dvc_exp=False: the experiment is DVC's (`dvc exp run`) or none (`dvc repro`), never one that
        # DVCLive makes; dvcyaml=False: dvc.yaml declares the files, DVCLive must not rewrite it.
        return Live(dir=self.directory, save_dvc_exp=False, dvcyaml=False, report=None)

    def epoch(self, report: dict[str, Any]) -> None:
        """Logs one epoch's report and writes the files at once (summary and one row per metric)."""
        self.live.step = int(report["epoch"])
        for name, value in live_values(report).items():
            self.live.log_metric(name, value, timestamp=False, plot=name not in SUMMARY_ONLY)
        self.live.next_step()  # writes metrics.json and signals the VS Code extension

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Rewrites the files from the run's full history: a run resumed from a checkpoint (a crash, or a
        re-run of a finished run) reported only its last epochs while it went."""
        self.live.end()
        self.live = self._open()
        for row in history:
            self.epoch(row)
        self.live.end()

    def close(self) -> None:
        """Ends the logger without rewriting (a failed run keeps the epochs it reported)."""
        self.live.end()
