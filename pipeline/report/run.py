"""One evaluation run, from the prepared tables and a run's outputs to every file the evaluate stage writes:
metrics JSON (DVC metrics), plot CSVs and PNGs (DVC plots), the per-class table and the Markdown report.

Every number is computed before the first file is written; each file is written atomically. A branch that
does not apply (HOI detection on a dataset without boxes or objects) is reported as not evaluated, with the
reason, in its metrics file, the report and its plots, never as an empty result.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.classes.space import ClassSpace
from pipeline.datasets.splits import test_pairs
from pipeline.report.evaluation import detection_not_applicable, evaluate_classification, evaluate_detection
from pipeline.report.markdown import evaluation_markdown
from pipeline.report.plots import (choose_pr_classes, long_tail_rows, pr_rows, save_long_tail_png, save_pr_png,
                                   write_csv)

log = logging.getLogger(__name__)
COUNT_COLUMN = {"classification": "n_train_images", "detection": "n_train_pairs"}
SKIPPED = {"skipped": "turned off in params.yaml evaluate"}


@dataclass
class EvaluationInputs:
    prepared: str                     # folder of images / pairs / classes.parquet
    image_scores: str = ""            # "" = classification off
    hoi_detections: str = ""          # "" = detection off
    hoi_detections_table: object = None   # a pa.Table scored instead of reading hoi_detections (evaluate.external)
    external: dict | None = None          # what the table came from (results file, format, rejects): into the metrics
    official_results: str = ""            # V-COCO: score_regions' folder holding the official results list


@dataclass
class Evaluation:
    """Everything the evaluate stage writes, computed."""

    space: ClassSpace
    classification: dict | None = None
    detection: dict | None = None     # metrics, or {"not_evaluated": reason}
    per_class: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    demo: bool = False

    def summary(self) -> dict:
        return {"classification": self.classification, "detection": self.detection, "demo": self.demo}


def evaluate(inputs: EvaluationInputs, pr_classes: list[int] | None = None) -> Evaluation:
    """Computes the metrics, per-class results and plot data of a run.

    Raises:
        FileNotFoundError: an input of a branch that is on (the message says which param turns it off).
        ValueError: inputs that do not fit the prepared dataset (e.g. scores of another label space), or
            ``pr_classes`` outside the class ids.
    """
    prepared = Path(inputs.prepared)
    paths = {"images": prepared / "images.parquet", "pairs": prepared / "pairs.parquet",
             "classes": prepared / "classes.parquet"}
    for name, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"evaluate needs {name} at {path} (run prepare)")
    space = ClassSpace.from_table(storage.read_parquet(paths["classes"]), str(paths["classes"]))
    wanted = list(pr_classes or [])
    bad = [h for h in wanted if not 0 <= h < len(space)]
    if bad:
        raise ValueError(f"params.yaml evaluate.pr_classes {wanted}: class ids must lie in [0, {len(space)}) "
                         f"(the rows of {paths['classes']})")
    tables = {name: storage.read_parquet(path) for name, path in paths.items() if name != "classes"}
    wanted_inputs = {"image_scores": (inputs.image_scores, "classification", "run predict"),
                     "hoi_detections": (inputs.hoi_detections, "detection", "run the detection branch")}
    for name, (path, param, how) in wanted_inputs.items():
        if name == "hoi_detections" and path and inputs.hoi_detections_table is not None:
            tables[name] = inputs.hoi_detections_table
        elif path and Path(path).exists():
            paths[name] = Path(path)
            tables[name] = storage.read_parquet(path)
    reason = None
    if inputs.hoi_detections:
        meta = storage.parquet_metadata(paths["hoi_detections"]) if "hoi_detections" in paths else None
        reason = detection_not_applicable(space, test_pairs(tables["images"], tables["pairs"]).num_rows, meta)
    for name, (path, param, how) in wanted_inputs.items():
        if path and name not in tables and not (name == "hoi_detections" and reason):
            raise FileNotFoundError(f"evaluate needs {name} at {path} (evaluate.{param} is true: {how}, or set it "
                                    "false)")
    out = Evaluation(space, provenance={str(p): _describe(p) for p in paths.values()},
                     demo=any(_demo_flag(storage.parquet_metadata(p)) for p in paths.values()))
    out.per_class = {"hoi": np.arange(len(space)), "name": space.names}
    if space.column("category") is not None:
        out.per_class["category"] = space.table.column("category").to_pylist()
    counts = {k: _counts(space, c) for k, c in COUNT_COLUMN.items()}
    if inputs.image_scores:
        ev = evaluate_classification(tables["images"], space, tables["image_scores"])
        out.classification = ev.metrics
        out.per_class.update(n_train_images=counts["classification"], **ev.columns)
        out.plots["classification"] = _plot_data(ev.per_class, counts["classification"], "n_train_images", ev.curve,
                                                 wanted, space.names)
        log.info("classification mAP %s%% (%s)", ev.metrics["map"], space.dataset)
    if reason:
        out.detection = {"not_evaluated": f"HOI detection not evaluated: {reason}"}
        log.warning("%s", out.detection["not_evaluated"])
    elif inputs.hoi_detections and space.dataset == "vcoco" and not inputs.external:
        from pipeline.report.vcoco import evaluate_prepared   # V-COCO's own protocol: official role AP

        out.detection, columns, curve, source = evaluate_prepared(prepared, inputs.official_results, space)
        out.provenance[source] = "the run's detections in V-COCO's official results format (score_regions)"
        out.per_class.update(n_train_pairs=counts["detection"], **columns)
        out.plots["detection"] = _plot_data(columns["det_ap"], counts["detection"], "n_train_pairs", curve, wanted,
                                            space.names)
        log.info("V-COCO role AP scenario 1 %s%%", out.detection["role_ap_scenario_1"])
    elif inputs.hoi_detections:
        metrics, default, known = evaluate_detection(tables["images"], tables["pairs"], space, tables["hoi_detections"])
        if inputs.external:
            metrics["external"] = inputs.external
            out.provenance[inputs.hoi_detections] = (f"external results, format {inputs.external['format']}; "
                                                      f"{inputs.external['rejected']} of {inputs.external['rows_read']} "
                                                      "rows rejected")
        out.detection = metrics
        rare = space.rare
        out.per_class.update(n_train_pairs=counts["detection"],
                             **({"rare": rare} if rare is not None else {}), det_ap=default.per_class,
                             det_ap_known_object=known.per_class if known else np.full(len(space), np.nan))
        out.plots["detection"] = _plot_data(default.per_class, counts["detection"], "n_train_pairs",
                                            default.precision_recall, wanted, space.names)
        log.info("HOI detection mAP full %s%%", metrics["default"]["full"])
    return out


def write(ev: Evaluation, metrics_dir: str, plots_dir: str, report: str) -> None:
    """Writes the metrics, plots, per-class table and report of ``ev`` (each file atomically)."""
    reason = (ev.detection or {}).get("not_evaluated", "")
    _write_plots(ev.plots, Path(plots_dir), {"detection": reason} if reason else {})
    with storage.atomic_path(Path(report).with_name("per_class_ap.csv")) as tmp:
        write_csv(_per_class_rows(ev.per_class), tmp)
    storage.write_json(ev.classification or SKIPPED, Path(metrics_dir) / "classification.json")
    storage.write_json(ev.detection or SKIPPED, Path(metrics_dir) / "detection.json")
    storage.write_text(evaluation_markdown(ev.classification, ev.detection, ev.provenance, ev.demo,
                                           ev.space.dataset, ev.space.label_mode), report)


def _counts(space: ClassSpace, column: str) -> np.ndarray:
    values = space.column(column)
    return np.zeros(len(space), np.int64) if values is None else values


def _plot_data(per_class_ap, counts, count_name: str, curve, wanted: list[int], names: list[str]) -> dict:
    """Long-tail rows and precision-recall curves (by legend label) of one branch."""
    curves = {}
    for h in choose_pr_classes(per_class_ap, counts, wanted):
        ap = per_class_ap[h]
        curves[(h, f"{h} {names[h]} (AP {'n/a' if np.isnan(ap) else f'{100 * ap:.1f}'})")] = curve(h)
    return {"long_tail": long_tail_rows(per_class_ap, counts, names, count_name), "curves": curves}


def _write_plots(plots: dict[str, dict], out: Path, reasons: dict[str, str]) -> None:
    """The plots folder, atomically. Every file dvc.yaml declares exists even for a branch that is off or
    does not apply; its PNG says why it has no curve."""
    with storage.atomic_path(out) as tmp:
        (tmp / "pr").mkdir(parents=True)
        for task, count in COUNT_COLUMN.items():
            data = plots.get(task, {"long_tail": [], "curves": {}})
            write_csv(data["long_tail"], tmp / f"long_tail_{task}.csv", ["hoi", "name", count, "ap"])
            for (h, _), (rec, prec) in data["curves"].items():
                write_csv(pr_rows(rec, prec), tmp / "pr" / f"{task}_{h:03d}.csv", ["recall", "precision"])
            message = reasons.get(task, "" if task in plots else "not evaluated (turned off in params.yaml)")
            if task in plots and not any(len(c[0]) for c in data["curves"].values()):
                message = "nothing ranked for the chosen classes (no scores or detections)"
            title = f"{task}: precision-recall" + ("" if task in plots else " (not evaluated)")
            save_pr_png({label: c for (_, label), c in data["curves"].items()}, title, tmp / f"pr_{task}.png",
                        message)
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
    """One row per class; APs in percent, empty where the class was not evaluated."""
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
