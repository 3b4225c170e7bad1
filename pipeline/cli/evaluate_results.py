r"""``defr evaluate``: the official HICO-DET / HICO numbers for any model's results, without Matlab.

    defr evaluate upt_cache/ --benchmark hicodet --anno instances_test2015.json --hico-anno anno.mat --out eval/
    defr evaluate qpic_preds.json --benchmark hicodet --anno anno_bbox.mat --compare qpic --out eval/
    defr evaluate image_scores.parquet --benchmark hico --anno anno.mat --out eval/
    defr evaluate vcoco_dets.pkl --benchmark vcoco --anno vcoco_test.json --coco instances_vcoco_all_2014.json --out eval/
    defr evaluate preds.csv --benchmark hicodet --anno instances_test2015.json --zero-shot rf-uc --out eval/

HICO-DET: Full / Rare / Non-rare mAP in the Default and Known-Object settings with the project's evaluator
(:func:`pipeline.metrics.hicodet_map`, equal to ho-rcnn's ``eval_one.m`` / ``VOCevaldet_bboxpair.m``);
HICO: classification mAP, Few@1/5/10 and Known-Object mAP (:func:`pipeline.metrics.hico_classification_map`).
V-COCO: agent AP and role AP, scenarios 1 and 2, equal to the official ``vsrl_eval.py``
(:mod:`pipeline.cli.evaluate_vcoco`).
``--zero-shot rf-uc|nf-uc|uo|uv`` (HICO-DET only) adds Full / Seen / Unseen over GEN-VLKT's unseen lists.
Writes into ``--out``: ``metrics.json``, ``per_class_ap.csv``, ``rejects.csv``, ``pr/`` (precision-recall
CSVs and ``pr.png``) and ``report.md``, all at once (the folder is replaced atomically). Imports neither
torch nor Ray. Formats: :mod:`pipeline.results.formats`; docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

log = logging.getLogger("defr.evaluate")
BENCHMARKS = ("hicodet", "hico", "vcoco")
DEFAULT_MAX_REJECT = 0.05   # params.yaml checks.max_reject_fraction


def add_parser(sub) -> argparse.ArgumentParser:
    """Registers ``evaluate`` on the ``defr`` subcommand parsers."""
    from pipeline.choices import HOI_BASES, ZERO_SHOT
    from pipeline.results.detr_lists import HOI_LABELS, OBJECT_LABELS
    from pipeline.results.formats import FORMATS
    from pipeline.results.mat_cache import OBJECT_ORDERS

    p = sub.add_parser("evaluate", help="official HICO-DET / HICO numbers for any model's result files",
                       description=__doc__.split("\n\n")[0].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", metavar="RESULTS", help="result file or folder (detections_NN.mat folder, .json/.pkl "
                                                     "result list, .csv/.jsonl/.parquet table)")
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--anno", required=True, help="hicodet: instances_test2015.json or anno_bbox.mat; hico: anno.mat; "
                                                 "vcoco: vcoco_test.json (paths or fsspec URIs)")
    p.add_argument("--hico-anno", default="", help="hicodet: HICO's anno.mat, for the official Known-Object rule "
                                                   "(default: anno.mat beside --anno if there is one)")
    p.add_argument("--coco", default="", help="vcoco: the COCO instances with the boxes (instances_vcoco_all_2014.json)")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--out", required=True, help="output folder (replaced)")
    p.add_argument("--compare", nargs="*", default=[], metavar="NAME",
                   help="published results to show beside yours (e.g. qpic cdn-l defr-b16; gen-vlkt-s hoiclip "
                        "with --zero-shot)")
    p.add_argument("--zero-shot", default="none", choices=ZERO_SHOT,
                   help="hicodet: also Full / Seen / Unseen mAP of this zero-shot setting (GEN-VLKT's unseen lists)")
    p.add_argument("--pr-classes", type=int, nargs="*", default=[], metavar="HOI",
                   help="official 1-based HOI ids to plot precision-recall for (default: 3 chosen by AP)")
    p.add_argument("--images", default="", help="pipeline format: the prepared images.parquet naming its image_ids")
    p.add_argument("--mat-object-order", default="auto", choices=OBJECT_ORDERS,
                   help="detections_NN.mat numbering: coco (ho-rcnn), hico (UPT), auto (from the row counts)")
    p.add_argument("--hoi-base", default="auto", choices=HOI_BASES,
                   help="plain tables: 1 = official HOI ids 1..600, 0 = ids 0..599; auto: 1, refusing ids that look "
                        "0-based (some 0, no 600); the base read is in metrics.json and the report")
    p.add_argument("--hoi-labels", default="auto", choices=HOI_LABELS,
                   help="result lists: category_id is a verb (QPIC/CDN) or a HOI (GEN-VLKT/HOICLIP)")
    p.add_argument("--object-labels", default="coco80", choices=OBJECT_LABELS, help="result lists: object label ids")
    p.add_argument("--max-reject-fraction", type=float, default=DEFAULT_MAX_REJECT,
                   help="fail when more of the rows are rejected (checks.max_reject_fraction)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def run(args) -> int:
    """Runs ``defr evaluate``; prints the headline numbers and where everything was written."""
    start = time.perf_counter()
    from pipeline.results.published import lookup

    # Arguments are checked before any file is read: a typo fails in a second, not after the scoring.
    if not 0 <= args.max_reject_fraction <= 1:
        raise ValueError(f"--max-reject-fraction {args.max_reject_fraction}: expected a fraction in [0, 1]")
    if args.zero_shot != "none" and args.benchmark != "hicodet":
        raise ValueError(f"--zero-shot {args.zero_shot}: the zero-shot settings are HICO-DET's (their unseen lists "
                         f"index its 600 HOI classes); use --benchmark hicodet, not {args.benchmark}")
    if args.benchmark == "vcoco":
        from pipeline.cli.evaluate_vcoco import run_vcoco

        return run_vcoco(args, start)
    compare = lookup(args.benchmark, args.compare, args.zero_shot)
    _pr_classes(args.pr_classes, np.zeros(0), 600)
    from pipeline import storage

    if not storage.exists(args.results):  # before the annotations take their seconds
        raise FileNotFoundError(f"{args.results}: no such file or folder")
    if args.benchmark == "hicodet":
        result = evaluate_hicodet(args.results, args.anno, args.hico_anno or _beside(args.anno, "anno.mat"),
                                  args.format, _options(args), args.max_reject_fraction, args.pr_classes,
                                  args.zero_shot)
    else:
        result = evaluate_hico(args.results, args.anno, args.images, args.max_reject_fraction, args.pr_classes)
    result["compare"] = compare
    result["seconds"] = round(time.perf_counter() - start, 2)
    write_outputs(result, args.out)
    m = result["metrics"]
    if args.benchmark == "hicodet":
        for setting in ("default", "known_object"):
            v = m[setting]
            print(f"{setting:13s} mAP Full {_f(v['full'])}  Rare {_f(v['rare'])}  Non-rare {_f(v['non_rare'])}")
        if "zero_shot" in m:
            z = m["zero_shot"]
            print(f"zero-shot {z['setting'].upper():5s} mAP Full {_f(z['full'])}  Seen {_f(z['seen'])}  "
                  f"Unseen {_f(z['unseen'])}")
    else:
        print(f"mAP {_f(m['map'])}  Few@1 {_f(m['few1'])}  Few@5 {_f(m['few5'])}  Few@10 {_f(m['few10'])}  "
              f"Known-Object {_f(m['known_object_map'])}")
    if result["rejects"]:
        print(f"{len(result['rejects'])} of {result['total']} rows rejected: {result['reject_summary']} "
              f"(listed in {args.out}/rejects.csv)")
    print(f"{result['format']}: {result['rows']} rows scored in {result['seconds']} s; report {args.out}/report.md")
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _beside(anno: str, name: str) -> str:
    from pipeline import storage

    if anno.endswith("anno.mat"):
        return ""
    candidate = storage.join(anno.rsplit("/", 1)[0], name) if "/" in anno else name
    return candidate if storage.exists(candidate) else ""


def _options(args):
    from pipeline.results.formats import ReadOptions

    return ReadOptions(images=args.images, mat_object_order=args.mat_object_order, hoi_labels=args.hoi_labels,
                       object_labels=args.object_labels, hoi_base=args.hoi_base)


def evaluate_hicodet(results: str, anno: str, hico_anno: str = "", fmt: str = "auto", options=None,
                     max_reject_fraction: float = DEFAULT_MAX_REJECT, pr_classes=(), zero_shot: str = "none") -> dict:
    """Reads ``results`` and scores it against the test set: metrics (percent), per-class rows, curves.

    ``zero_shot`` (a setting of :data:`pipeline.choices.ZERO_SHOT`) adds ``metrics["zero_shot"]``: Full /
    Seen / Unseen, the means of the Default per-class AP over all classes, the seen and the unseen ones,
    in percent and not rounded (so they can be compared with another evaluator's to 1e-6).

    Raises:
        pipeline.rejects.DataLossError: more rows rejected than ``max_reject_fraction``.
        ValueError, FileNotFoundError: unreadable inputs (the message names the file).
    """
    from pipeline.classes.hico_vocab import hico_vocabulary
    from pipeline.metrics import hicodet_map
    from pipeline.rejects import check_loss, top_reasons
    from pipeline.results.formats import named_read_errors, read_detections
    from pipeline.results.testset import read_test_set

    vocab = hico_vocabulary()
    t0 = time.perf_counter()
    with named_read_errors(anno, "HICO-DET test annotations"):
        test = read_test_set(anno, hico_anno, vocab)
    t1 = time.perf_counter()
    det = read_detections(results, test, fmt, options)
    t2 = time.perf_counter()
    summary = check_loss(f"{results} ({det.format})", det.total, [r["reason"] for r in det.rejects],
                         max_reject_fraction, "rejects.csv")
    if summary:
        log.warning("%s", summary)
    ids = np.arange(test.num_images)
    default = hicodet_map(det.table(), test.pairs, test.rare, len(vocab), image_ids=ids)
    known = hicodet_map(det.table(), test.pairs, test.rare, len(vocab), known_object=True, image_ids=ids,
                        hoi_object=vocab.hoi_object, object_images=test.object_images)
    t3 = time.perf_counter()
    pct = _pct
    metrics = {s: {k: pct(getattr(r, k)) for k in ("full", "rare", "non_rare")}
               for s, r in (("default", default), ("known_object", known))}
    metrics.update(num_classes=default.num_evaluated, num_detections=len(det), num_rejected=len(det.rejects),
                   num_test_images=test.num_images, num_test_pairs=int(len(test.pairs["hoi"])))
    if zero_shot != "none":
        metrics["zero_shot"] = _zero_shot(default.per_class, zero_shot)
    per_class = [{"hoi": h + 1, "verb": vocab[h].verb, "object": vocab[h].object, "rare": bool(test.rare[h]),
                  "num_test_pairs": int(default.num_positives[h]), "num_detections": int(default.num_detections[h]),
                  "ap": _pct(default.per_class[h]), "recall": _pct(default.recall[h]),
                  "ap_known_object": _pct(known.per_class[h])} for h in range(len(vocab))]
    if zero_shot != "none":   # per_class_ap.csv says which classes are unseen
        from pipeline.classes.zero_shot import hico_unseen

        unseen = set(hico_unseen(zero_shot).tolist())
        for row in per_class:
            row["unseen"] = row["hoi"] - 1 in unseen
    chosen = _pr_classes(pr_classes, default.per_class, len(vocab))
    curves = {h: default.precision_recall(h) for h in chosen}
    return {"benchmark": "hicodet", "metrics": metrics, "per_class": per_class, "curves": curves, "names": vocab,
            "rejects": det.rejects, "total": det.total, "rows": len(det), "format": det.format,
            "reject_summary": top_reasons(r["reason"] for r in det.rejects) if det.rejects else "",
            "notes": det.notes, "sources": {"results": results, **test.sources},
            "timing": {"read_annotations_s": round(t1 - t0, 3), "read_results_s": round(t2 - t1, 3),
                       "evaluate_s": round(t3 - t2, 3)}}


def evaluate_hico(results: str, anno: str, images: str = "", max_reject_fraction: float = DEFAULT_MAX_REJECT,
                  pr_classes=()) -> dict:
    """HICO classification mAP (default and Known-Object) and Few@1/5/10 of image-level scores."""
    from pipeline.classes.hico_vocab import hico_vocabulary
    from pipeline.metrics import hico_classification_map, subset_map
    from pipeline.metrics.ap import precision_recall
    from pipeline.rejects import check_loss, top_reasons
    from pipeline.results.formats import named_read_errors
    from pipeline.results.image_scores import read_image_scores
    from pipeline.results.testset import read_anno_test

    vocab = hico_vocabulary()
    t0 = time.perf_counter()
    with named_read_errors(anno, "HICO annotations (anno.mat)"):
        file_names, labels = read_anno_test(anno, vocab)
    # Few@k counts positive training images of anno.mat; the bundled vocabulary holds those counts.
    train_pos = vocab.hico_train_positives
    t1 = time.perf_counter()
    with named_read_errors(results, "image scores"):
        scores, rejects, total = read_image_scores(results, file_names, len(vocab), images)
    t2 = time.perf_counter()
    summary = check_loss(f"{results} (image scores)", total, [r["reason"] for r in rejects], max_reject_fraction,
                         "rejects.csv")
    if summary:
        log.warning("%s", summary)
    finite = scores[np.isfinite(scores)]
    # A test image without scores is ranked below every scored image (the evaluator needs finite numbers).
    scores = np.where(np.isfinite(scores), scores, (finite.min() if finite.size else 0.0) - 1.0)
    default = hico_classification_map(scores, labels)
    known = hico_classification_map(scores, labels, known_object=True, hoi_object=vocab.hoi_object)
    metrics = {"map": _pct(default.map), "known_object_map": _pct(known.map)}
    counts = {"evaluated": default.num_evaluated}
    for k in (1, 5, 10):
        value, counts[f"few{k}"] = subset_map(default.per_class, vocab.few_shot(k, train_pos))
        metrics[f"few{k}"] = _pct(value)
    value, counts["few1_defr"] = subset_map(default.per_class, sorted(vocab.defr_few1))
    metrics["few1_defr"] = _pct(value)
    metrics.update(num_classes=counts, num_test_images=len(file_names), num_rejected=len(rejects))
    per_class = [{"hoi": h + 1, "verb": vocab[h].verb, "object": vocab[h].object,
                  "num_train_images": int(train_pos[h]), "ap": _pct(default.per_class[h]),
                  "ap_known_object": _pct(known.per_class[h])} for h in range(len(vocab))]
    chosen = _pr_classes(pr_classes, default.per_class, len(vocab))
    curves = {}
    for h in chosen:
        keep = labels[:, h] != 0
        curves[h] = precision_recall(scores[keep, h], labels[keep, h] == 1)
    return {"benchmark": "hico", "metrics": metrics, "per_class": per_class, "curves": curves, "names": vocab,
            "rejects": rejects, "total": total, "rows": int(total - len(rejects)), "format": "image scores",
            "reject_summary": top_reasons(r["reason"] for r in rejects) if rejects else "", "notes": [],
            "sources": {"results": results, "annotation": anno},
            "timing": {"read_annotations_s": round(t1 - t0, 3), "read_results_s": round(t2 - t1, 3),
                       "evaluate_s": round(time.perf_counter() - t2, 3)}}


def _zero_shot(per_class: np.ndarray, setting: str) -> dict:
    """Full / Seen / Unseen (percent, unrounded) of the Default per-class AP in a zero-shot setting."""
    from pipeline.classes.zero_shot import hico_unseen, source_line
    from pipeline.metrics import seen_unseen_map

    unseen = np.zeros(len(per_class), dtype=bool)
    unseen[hico_unseen(setting)] = True
    means = seen_unseen_map(per_class, unseen)
    return {"setting": setting, **{k: None if not np.isfinite(v) else float(v) * 100 for k, (v, _) in means.items()},
            "num_classes": {k: n for k, (_, n) in means.items()}, "source": source_line()}


def _pct(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x) * 100, 4)


def _pr_classes(wanted, per_class: np.ndarray, num_classes: int) -> list[int]:
    """0-based classes for the curves: ``wanted`` (1-based ids) or the best, median and worst evaluated AP."""
    bad = [h for h in wanted if not 1 <= h <= num_classes]
    if bad:
        raise ValueError(f"--pr-classes {bad}: HOI ids run from 1 to {num_classes}")
    if wanted:
        return [h - 1 for h in wanted]
    evaluated = np.flatnonzero(~np.isnan(per_class))
    if not evaluated.size:
        return []
    by_ap = evaluated[np.argsort(-per_class[evaluated], kind="stable")]
    return list(dict.fromkeys(int(h) for h in (by_ap[0], by_ap[len(by_ap) // 2], by_ap[-1])))


def write_outputs(result: dict, out: str) -> None:
    """metrics.json, per_class_ap.csv, rejects.csv, pr/*.csv + pr/pr.png and report.md, replacing ``out``."""
    from pipeline import storage
    from pipeline.report.plots import pr_rows, save_pr_png, write_csv
    from pipeline.results.results_markdown import report_markdown

    vocab = result["names"]
    with storage.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        metrics = {"benchmark": result["benchmark"], **result["metrics"], "format": result["format"],
                   "rows_scored": result["rows"], "rows_read": result["total"], "seconds": result["seconds"],
                   "timing": result["timing"], "sources": result["sources"], "notes": result["notes"]}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_csv(result["per_class"], tmp / "per_class_ap.csv")
        write_csv(result["rejects"], tmp / "rejects.csv", ["source", "item", "reason"])
        (tmp / "pr").mkdir()
        labelled = {}
        for h, (rec, prec) in result["curves"].items():
            write_csv(pr_rows(rec, prec), tmp / "pr" / f"hoi_{h + 1:03d}.csv", ["recall", "precision"])
            ap = result["per_class"][h]["ap"]
            shown = "n/a" if ap is None else f"{ap:.1f}"
            labelled[f"{h + 1} {vocab[h].verb} {vocab[h].object} (AP {shown})"] = (rec, prec)
        save_pr_png(labelled, f"{result['benchmark']}: precision-recall", tmp / "pr" / "pr.png",
                    "" if any(len(c[0]) for c in labelled.values()) else "nothing ranked for the chosen classes")
        (tmp / "report.md").write_text(report_markdown(result))
