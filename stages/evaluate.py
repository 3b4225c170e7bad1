"""Official HICO / HICO-DET evaluation of a run: DVC metrics, DVC plots and a Markdown report.

Laptop (inside .venv) or the head node of a cluster (NumPy only, seconds; or `dvc repro evaluate`):
    python -m stages.evaluate --prepared data/prepared --image-scores data/image_scores.parquet \
        --hoi-detections data/hoi_detections.parquet --metrics metrics --plots plots/eval \
        --report reports/evaluation.md

Reads params.yaml ``evaluate``: classification, detection (which branches to score; a branch that is on
needs its input table), pr_classes (HOI ids for precision-recall curves; [] picks three). Writes
``metrics/classification.json`` and ``metrics/detection.json`` (percent), plots under ``plots/eval``
(long-tail CSVs + PNG, precision-recall CSVs + PNG), ``reports/per_class_ap.csv`` and
``reports/evaluation.md``; each file is written atomically, after every number is computed.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.report import evaluation_markdown
from pipeline.report.evaluation import class_column, evaluate_classification, evaluate_detection
from pipeline.report.plots import (choose_pr_classes, long_tail_rows, pr_rows, save_long_tail_png,
                                   save_pr_png, write_csv)
from pipeline.vocab import hico_vocabulary
from stages import console
from stages import params as P

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--image-scores", default="data/image_scores.parquet")
    ap.add_argument("--hoi-detections", default="data/hoi_detections.parquet")
    ap.add_argument("--metrics", default="metrics", help="folder for classification.json, detection.json")
    ap.add_argument("--plots", default="plots/eval")
    ap.add_argument("--report", default="reports/evaluation.md")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("evaluate", args.params)
    do_cls, do_det, wanted = cfg["classification"], cfg["detection"], cfg["pr_classes"]
    if any(not 0 <= h < 600 for h in wanted):
        raise ValueError(f"params.yaml evaluate.pr_classes {wanted}: HOI ids must lie in [0, 600)")

    prepared = Path(args.prepared)
    inputs = {"images": prepared / "images.parquet", "pairs": prepared / "pairs.parquet",
              "classes": prepared / "classes.parquet"}
    if do_cls:
        inputs["image_scores"] = Path(args.image_scores)
    if do_det:
        inputs["hoi_detections"] = Path(args.hoi_detections)
    for name, path in inputs.items():
        if not path.exists():
            branch = {"image_scores": " (evaluate.classification is true: run predict, or set it false)",
                      "hoi_detections": " (evaluate.detection is true: run the detection branch, or set it false)"
                      }.get(name, " (run prepare)")
            raise FileNotFoundError(f"evaluate needs {name} at {path}{branch}")
    tables = {name: storage.read_parquet(path) for name, path in inputs.items()}
    provenance = {str(path): _describe(path) for path in inputs.values()}
    demo = any(_demo_flag(storage.parquet_metadata(path)) for path in inputs.values())

    vocab = hico_vocabulary()
    names = [f"{vocab[h].verb} {vocab[h].object}" for h in range(len(vocab))]
    cls_metrics = det_metrics = None
    per_class = {"hoi": np.arange(600), "name": names}
    plots: dict[str, dict] = {}
    if do_cls:
        ev = evaluate_classification(tables["images"], tables["classes"], tables["image_scores"])
        cls_metrics = ev.metrics
        counts = class_column(tables["classes"], "n_train_images")
        per_class.update(n_train_images=counts, cls_ap=ev.per_class, cls_ap_known_object=ev.per_class_known_object)
        plots["classification"] = _plot_data(ev.per_class, counts, "n_train_images", ev.curve, wanted, names)
        log.info("HICO mAP %s%% over %d classes", cls_metrics["map"], cls_metrics["num_classes"]["evaluated"])
    if do_det:
        det_metrics, default, known = evaluate_detection(tables["images"], tables["pairs"], tables["classes"],
                                                         tables["hoi_detections"])
        counts = class_column(tables["classes"], "n_train_pairs")
        per_class.update(n_train_pairs=counts, rare=class_column(tables["classes"], "rare"),
                         det_ap=default.per_class, det_ap_known_object=known.per_class)
        plots["detection"] = _plot_data(default.per_class, counts, "n_train_pairs", default.precision_recall,
                                        wanted, names)
        log.info("HICO-DET mAP full %s%%", det_metrics["default"]["full"])
    _write_plots(plots, Path(args.plots))
    skipped = {"skipped": "turned off in params.yaml evaluate"}
    with storage.atomic_path(Path(args.report).with_name("per_class_ap.csv")) as tmp:
        write_csv(_per_class_rows(per_class), tmp)
    storage.write_json(cls_metrics or skipped, Path(args.metrics) / "classification.json")
    storage.write_json(det_metrics or skipped, Path(args.metrics) / "detection.json")
    storage.write_text(evaluation_markdown(cls_metrics, det_metrics, provenance, demo), args.report)
    summary = {"classification": cls_metrics, "detection": det_metrics, "demo": demo}
    print(json.dumps(summary))
    return summary


COUNT_COLUMN = {"classification": "n_train_images", "detection": "n_train_pairs"}


def _plot_data(per_class_ap, counts, count_name: str, curve, wanted: list[int], names: list[str]) -> dict:
    """Long-tail rows and precision-recall curves (by legend label) of one branch."""
    curves = {}
    for h in choose_pr_classes(per_class_ap, counts, wanted):
        curves[(h, f"{h} {names[h]} (AP {100 * per_class_ap[h]:.1f})")] = curve(h)
    return {"long_tail": long_tail_rows(per_class_ap, counts, names, count_name), "curves": curves}


def _write_plots(plots: dict[str, dict], out: Path) -> None:
    """The plots folder, atomically. Every file dvc.yaml declares exists even for a branch that is off."""
    with storage.atomic_path(out) as tmp:
        (tmp / "pr").mkdir(parents=True)
        for task, count in COUNT_COLUMN.items():
            data = plots.get(task, {"long_tail": [], "curves": {}})
            write_csv(data["long_tail"], tmp / f"long_tail_{task}.csv", ["hoi", "name", count, "ap"])
            for (h, _), (rec, prec) in data["curves"].items():
                write_csv(pr_rows(rec, prec), tmp / "pr" / f"{task}_{h:03d}.csv")
            title = f"{task}: precision-recall" + ("" if task in plots else " (not evaluated)")
            save_pr_png({label: c for (_, label), c in data["curves"].items()}, title, tmp / f"pr_{task}.png")
        save_long_tail_png({t: (d["long_tail"], COUNT_COLUMN[t]) for t, d in plots.items()}, tmp / "long_tail.png")


def _describe(path: Path) -> str:
    """The producing stage's Parquet metadata, shortened, for the report's provenance list."""
    meta = storage.parquet_metadata(path)
    text = "; ".join(f"{k}={v}" for k, v in sorted(meta.items()) if k != "pandas")
    return (text[:300] + "...") if len(text) > 300 else (text or "no metadata")


def _demo_flag(meta: dict[str, str]) -> bool:
    """True when a producing stage marked its output DEMO ONLY (a truthy key containing "demo")."""
    def truthy(key, value) -> bool:
        if "demo" in str(key).lower() and value not in (False, None, 0, "", "false", "False", "0"):
            return True
        return isinstance(value, dict) and any(truthy(k, v) for k, v in value.items())

    for key, text in meta.items():
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if truthy(key, value):
            return True
    return False


def _per_class_rows(columns: dict) -> list[dict]:
    """One row per HOI class; APs in percent, empty where the class was not evaluated."""
    rows = []
    for i in range(len(columns["hoi"])):
        row = {}
        for key, values in columns.items():
            v = values[i]
            if "ap" in key.split("_"):
                row[key] = "" if np.isnan(v) else round(float(v) * 100, 4)
            else:
                row[key] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return rows


if __name__ == "__main__":
    console.run(main, "evaluate")
