"""The Markdown report of ``defr evaluate``: the numbers, the published ones asked for, what was read."""
from __future__ import annotations


def _cell(v) -> str:
    return "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _table(header: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows])


def _zero_shot(z: dict, compare: list[dict]) -> list[str]:
    """The zero-shot table: this run's Full / Seen / Unseen beside the published rows asked for."""
    n = z["num_classes"]
    rows = [["**this run**", z["unseen"], z["seen"], z["full"], ""]]
    rows += [[c["method"], c["unseen"], c["seen"], c["full"], c["source"]] for c in compare]
    return (["", f"## Zero-shot {z['setting'].upper()}", "",
             f"Default setting; Unseen = mean AP over the setting's {n['unseen']} unseen classes, Seen over the other "
             f"{n['seen']}, Full over all {n['full']}. Lists: {z['source']}. Published rows are the authors' own "
             "numbers: their models trained without the unseen classes, as this setting assumes of yours.", ""]
            + _table(["method", "Unseen", "Seen", "Full", "source"], rows))


def report_markdown(result: dict) -> str:
    """The report for a result of ``pipeline.cli.evaluate_results.evaluate_hicodet`` / ``evaluate_hico``."""
    m = result["metrics"]
    out = [f"# {'HICO-DET' if result['benchmark'] == 'hicodet' else 'HICO'} evaluation", ""]
    if result["benchmark"] == "hicodet":
        out += ["Official protocol (ho-rcnn `eval_one.m` / `VOCevaldet_bboxpair.m`): a detection is a true positive "
                "when min(IoU human, IoU object) >= 0.5 with an unmatched ground-truth pair of its class (1-pixel "
                "inclusive boxes); 11-point AP; mean over the 600 classes; percent.", ""]
        rows = [["**this run**, Default", m["default"]["full"], m["default"]["rare"], m["default"]["non_rare"], ""],
                ["**this run**, Known Object", m["known_object"]["full"], m["known_object"]["rare"],
                 m["known_object"]["non_rare"], ""]]
        rows += [[c["method"] + " (Default)", c["full"], c["rare"], c["non_rare"], c["source"]]
                 for c in result["compare"] if c.get("kind") != "zero_shot"]
        out += _table(["method", "Full", "Rare", "Non-rare", "source"], rows)
        n = m["num_classes"]
        out += ["", f"Classes: {n['full']} (rare {n['rare']}, non-rare {n['non_rare']}); {m['num_detections']:,} "
                f"detections scored on {m['num_test_images']:,} test images ({m['num_test_pairs']:,} ground-truth "
                "pairs)."]
        if "zero_shot" in m:
            out += _zero_shot(m["zero_shot"], [c for c in result["compare"] if c.get("kind") == "zero_shot"])
    else:
        out += ["Official HICO protocol: ambiguous labels removed, unknown = negative; 11-point AP; percent.", ""]
        rows = [["**this run**", m["map"], m["few1"], m["few5"], m["few10"], ""]]
        rows += [[c["method"], c["map"], c["few1"], c["few5"], c["few10"], c["source"]] for c in result["compare"]]
        out += _table(["method", "mAP", "Few@1", "Few@5", "Few@10", "source"], rows)
        n = m["num_classes"]
        out += ["", f"Known-Object mAP: {_cell(m['known_object_map'])}. Few@1/5/10: classes with 1 / <=5 / <=10 "
                f"positive training images ({n['few1']} / {n['few5']} / {n['few10']}); Few@1 on the DEFR paper's "
                f"49-class list: {_cell(m['few1_defr'])}."]
    out += input_lines(result, f"{result['rows']:,} rows scored, {len(result['rejects']):,} rejected of "
                               f"{result['total']:,}")
    out += ["Per-class AP: per_class_ap.csv; precision-recall curves: pr/.", ""]
    return "\n".join(out)


def input_lines(result: dict, counts: str) -> list[str]:
    """The summary's "Input" section: the format and ``counts`` (what was scored and rejected), the sources,
    notes, rejects and timing of an evaluation ``result``."""
    out = ["", "## Input", "", f"- format: {result['format']}; {counts}"]
    out += [f"- {k}: {v}" for k, v in result["sources"].items()]
    out += [f"- {note}" for note in result["notes"]]
    if result["rejects"]:
        out += [f"- rejects (all in rejects.csv): {result['reject_summary']}"]
    t = result["timing"]
    out += [f"- time: annotations {t['read_annotations_s']} s, results {t['read_results_s']} s, evaluation "
            f"{t['evaluate_s']} s; {result.get('seconds', '?')} s in all", ""]
    return out
