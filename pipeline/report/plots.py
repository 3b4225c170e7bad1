"""Plot data for DVC (CSV tables for its templates) and PNG figures (log axes DVC cannot draw)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_csv(rows: list[dict], path: Path, fieldnames: list[str] | None = None) -> None:
    """Writes ``rows`` (same keys in each) as CSV with a header (``fieldnames`` when there is no row).

    Raises:
        ValueError: no row and no ``fieldnames`` (a CSV needs its header even when empty).
    """
    if not rows and not fieldnames:
        raise ValueError(f"{path}: no rows and no column names to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def long_tail_rows(per_class_ap: np.ndarray, train_counts: np.ndarray, names: list[str],
                   count_name: str) -> list[dict]:
    """One row per class with an AP: hoi, name, training count, AP in percent (sorted by count)."""
    rows = [{"hoi": int(h), "name": names[h], count_name: int(train_counts[h]),
             "ap": round(float(per_class_ap[h]) * 100, 4)}
            for h in np.flatnonzero(~np.isnan(per_class_ap))]
    return sorted(rows, key=lambda r: (r[count_name], r["hoi"]))


def pr_rows(recall: np.ndarray, precision: np.ndarray, max_points: int = 400) -> list[dict]:
    """A precision-recall curve as rows, thinned to ``max_points`` (DVC renders every row)."""
    keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), max_points)).astype(int))
    return [{"recall": round(float(recall[i]), 6), "precision": round(float(precision[i]), 6)} for i in keep]


def choose_pr_classes(per_class_ap: np.ndarray, train_counts: np.ndarray, wanted: list[int]) -> list[int]:
    """``wanted`` if given, else the evaluated classes with the most, median and fewest training images."""
    if wanted:
        return [int(h) for h in wanted]
    evaluated = np.flatnonzero(~np.isnan(per_class_ap))
    if evaluated.size == 0:
        return []
    by_count = evaluated[np.argsort(-np.asarray(train_counts)[evaluated], kind="stable")]
    return list(dict.fromkeys(int(h) for h in (by_count[0], by_count[len(by_count) // 2], by_count[-1])))


def save_long_tail_png(series: dict[str, tuple[list[dict], str]], path: Path) -> None:
    """Scatter of per-class AP against a training count (log x): one panel per title -> (rows, count key)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(series), 1), figsize=(6 * max(len(series), 1), 4), squeeze=False)
    for ax, (title, (rows, count_name)) in zip(axes[0], series.items()):
        if not rows:
            ax.text(0.5, 0.5, "no class with an AP", ha="center", va="center", transform=ax.transAxes)
        counts = np.array([max(r[count_name], 1) for r in rows])
        ax.scatter(counts, [r["ap"] for r in rows], s=8, alpha=0.6)
        ax.set_xscale("log")
        ax.set(xlabel=f"{count_name.replace('_', ' ')} (log; 0 drawn at 1)", ylabel="AP (%)", ylim=(0, 100),
               title=title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_pr_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path, message: str = "") -> None:
    """Precision-recall curves of the chosen classes in one figure; ``message`` is written across an empty
    plot (e.g. why there is no curve)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, (rec, prec) in curves.items():
        ax.plot(rec, prec, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7)
    if message:
        import textwrap

        ax.text(0.5, 0.5, textwrap.fill(message, 50), ha="center", va="center", fontsize=9, wrap=True,
                transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
