"""How much a stage may drop: a stage that loses more than a set fraction of an input fails, naming the
count and the top reasons from its rejects table; below the threshold it says how many and where.

Stages that can drop rows (prepare, detect, score_regions) call :func:`check_loss` once per split or input
after writing nothing yet, so a gutted result never reaches the next stage with exit status 0.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable


class DataLossError(ValueError):
    """More of an input was rejected than the threshold allows; the message has the count and reasons."""


def top_reasons(reasons: Iterable[str], n: int = 3) -> str:
    """The ``n`` most common reasons with their counts, e.g. ``"missing image file (390); ..."``."""
    counts = Counter(_generic(r) for r in reasons)
    return "; ".join(f"{reason} ({count})" for reason, count in counts.most_common(n))


def _generic(reason: str) -> str:
    # Reasons often embed the item ("box [1, 2, 3, 4] lies outside ..."): group by their first words.
    return reason.split(" [")[0].split(" (")[0][:120]


def check_loss(what: str, total: int, rejected_reasons: list[str], max_fraction: float,
               rejects_path: str = "") -> str:
    """Raises when ``rejected / total`` exceeds ``max_fraction`` (or everything was rejected).

    Args:
        what: the input and unit, e.g. ``"train split images"`` or ``"precomputed detection files"``.
        total: items in the input (kept + rejected).
        rejected_reasons: one reason per rejected item.
        max_fraction: the allowed fraction (``checks.max_reject_fraction``); 100 % always fails.
        rejects_path: where the full list is written (named in the messages).

    Returns:
        A one-line summary for the log ("" when nothing was rejected).

    Raises:
        DataLossError: too many rejected, with the count, the fraction and the top reasons.
    """
    n = len(rejected_reasons)
    if n == 0 or total == 0:
        return ""
    fraction = n / total
    head = f"{what}: {n} of {total} rejected ({100 * fraction:.1f} %)"
    reasons = f"; top reasons: {top_reasons(rejected_reasons)}"
    if n >= total:
        # The stage writes nothing when it fails, its rejects file included: the message names no file. No
        # threshold accepts losing every item, so none is suggested.
        raise DataLossError(f"{head}{reasons}. That is every one: check the paths, formats and params that "
                            "feed it")
    if fraction > max_fraction:
        raise DataLossError(f"{head}{reasons}. That is more than checks.max_reject_fraction = {max_fraction:g}: "
                            "check the paths, formats and params that feed it (raise checks.max_reject_fraction "
                            "in params.yaml to accept the loss)")
    return head + (f" (all listed in {rejects_path})" if rejects_path else "") + reasons
