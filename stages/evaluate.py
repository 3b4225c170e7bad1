"""Evaluation of a run on the prepared dataset's own label space: DVC metrics, DVC plots and a Markdown report.

Laptop (inside .venv) or the head node of a cluster (NumPy only, seconds; or `dvc repro evaluate`):
    python -m stages.evaluate --prepared data/prepared --image-scores data/image_scores.parquet \
        --hoi-detections data/hoi_detections.parquet --metrics metrics --plots plots/eval \
        --report reports/evaluation.md --official-results data/official_results

Reads params.yaml ``evaluate``: classification, detection (which branches to score; a branch that is on
needs its input table, unless it does not apply to the dataset: HOI detection without objects or boxes is
reported as not evaluated, with the reason), pr_classes (class ids for precision-recall curves; [] picks
three), external (another model's HICO-DET results scored instead of data/hoi_detections.parquet, read by
``defr evaluate``'s readers; its rejects count against checks.max_reject_fraction). Protocols: HICO / HICO-DET for multi-label datasets, both published MPII conventions for
single-label ones, V-COCO's official role AP for HOI detection on a vcoco dataset (scored from
``--official-results``, score_regions' results list; docs/evaluation.md); a dataset prepared in a HICO-DET
zero-shot setting (prepare.zero_shot) also gets Full / Seen / Unseen and the unseen classes' chance. Writes ``metrics/classification.json`` and ``metrics/detection.json``
(percent), plots under ``plots/eval`` (long-tail CSVs + PNG, precision-recall CSVs + PNG),
``reports/per_class_ap.csv`` and ``reports/evaluation.md``; each file is written atomically, after every
number is computed.
"""
from __future__ import annotations

import json
import logging

from pipeline.report.run import EvaluationInputs, evaluate, write
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--image-scores", default="data/image_scores.parquet")
    ap.add_argument("--hoi-detections", default="data/hoi_detections.parquet")
    ap.add_argument("--official-results", default="data/official_results",
                    help="V-COCO: score_regions' folder with the official results list (scored instead of the table)")
    ap.add_argument("--metrics", default="metrics", help="folder for classification.json, detection.json")
    ap.add_argument("--plots", default="plots/eval")
    ap.add_argument("--report", default="reports/evaluation.md")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("evaluate", args.params)
    inputs = EvaluationInputs(args.prepared, args.image_scores if cfg["classification"] else "",
                              args.hoi_detections if cfg["detection"] else "", official_results=args.official_results)
    external = P.named_file(cfg["external"]["results"])
    if external and cfg["detection"]:
        inputs.hoi_detections, inputs.hoi_detections_table, inputs.external = _external(
            external, cfg["external"], args.prepared, P.checks(args.params)["max_reject_fraction"])
    result = evaluate(inputs, cfg["pr_classes"])
    write(result, args.metrics, args.plots, args.report)
    summary = result.summary()
    print(json.dumps(summary))
    log.info("wrote %s/classification.json, %s/detection.json, %s and the plots in %s", args.metrics,
             args.metrics, args.report, args.plots)
    return summary


def _external(results: str, cfg: dict, prepared: str, max_reject_fraction: float):
    """Another model's results (evaluate.external) as the hoi_detections table, rejects checked."""
    from pipeline.rejects import check_loss, top_reasons
    from pipeline.results.formats import ReadOptions
    from pipeline.results.prepared import external_hoi_detections

    options = ReadOptions(mat_object_order=cfg["mat_object_order"], hoi_labels=cfg["hoi_labels"],
                          object_labels=cfg["object_labels"])
    table, det = external_hoi_detections(results, prepared, cfg["format"], options)
    reasons = [r["reason"] for r in det.rejects]
    line = check_loss(f"evaluate.external.results {results}", det.total, reasons, max_reject_fraction)
    if line:
        log.warning("%s", line)
    info = {"results": results, "format": det.format, "rows_read": det.total, "rejected": len(reasons),
            "top_reasons": top_reasons(reasons) if reasons else "", "notes": det.notes}
    log.info("external results %s (%s): %d detections scored", results, det.format, len(det))
    return results, table, info


if __name__ == "__main__":
    console.run(main, "evaluate")
