"""V-COCO evaluation from the official files to every output: ``defr evaluate --benchmark vcoco`` and the
evaluate stage's detection branch on a ``vcoco`` dataset (docs/evaluation.md).

Reads the V-COCO file and the COCO instances (:mod:`pipeline.datasets.vcoco`), a model's results
(:mod:`pipeline.results.vcoco`), scores them with :func:`pipeline.metrics.vcoco.vcoco_eval` (equal to the
official ``vsrl_eval.py``) and writes metrics (percent), one row per (action, role), precision-recall
curves, the rejects and a report.

Metrics (percent, not rounded: they equal the official code's to its float32 precision):
``role_ap_scenario_1`` / ``role_ap_scenario_2``: the official means, ``nanmean`` over the 25 (action, role)
entries with ``point`` included; ``role_ap_scenario_{1,2}_without_point``: the mean over the other 24, the
convention most papers report; ``agent_ap``: the official agent mean (sum over the 26 actions / 26);
``per_action``: each action's agent AP and its roles' APs.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
PAPERS_LEAVE_OUT = ("point",)


def _pct(x) -> float | None:
    """A float32 fraction of the official arrays as percent (NaN -> None)."""
    return None if x is None or not np.isfinite(x) else float(x) * 100


def vcoco_metrics(ev) -> dict:
    """The metrics dictionary of a :class:`pipeline.metrics.vcoco.VcocoEval` (see the module docstring)."""
    out = {}
    for s in ("scenario_1", "scenario_2"):
        out[f"role_ap_{s}"] = _pct(ev.role_map(s))
    for s in ("scenario_1", "scenario_2"):
        left_out = [a for a in PAPERS_LEAVE_OUT if a in ev.actions]
        out[f"role_ap_{s}_without_point"] = _pct(ev.role_map(s, tuple(left_out)))
    out["agent_ap"] = ev.agent_map_percent()   # the official printed expression (the code has no other mean)
    per_action = {}
    for a, name in enumerate(ev.actions):
        entry = {"agent_ap": _pct(ev.agent_ap[a]), "positives": int(ev.positives[a])}
        for r, role in enumerate(ev.roles[a][1:]):
            entry[role] = {s: _pct(ev.role_ap[s][a, r]) for s in ("scenario_1", "scenario_2")}
        per_action[name] = entry
    n_roles = int(sum(len(r) - 1 for r in ev.roles))
    out.update(num_actions=len(ev.actions), num_action_roles=n_roles, per_action=per_action)
    return out


def per_class_rows(ev) -> list[dict]:
    """One row per (action, role): its key, positives, detections ranked and APs (percent, 4 decimals)."""
    def r4(x):
        return "" if x is None or not np.isfinite(x) else round(float(x) * 100, 4)

    rows = []
    for a, name in enumerate(ev.actions):
        rows.append({"action": name, "role": "agent", "key": f"{name}_agent", "positives": int(ev.positives[a]),
                     "ranked": int(ev.ranked_agent[a]), "agent_ap": r4(ev.agent_ap[a]), "role_ap_scenario_1": "",
                     "role_ap_scenario_2": ""})
        for r, role in enumerate(ev.roles[a][1:]):
            rows.append({"action": name, "role": role, "key": f"{name}_{role}", "positives": int(ev.positives[a]),
                         "ranked": int(ev.ranked_role[a, r]), "agent_ap": "",
                         "role_ap_scenario_1": r4(ev.role_ap["scenario_1"][a, r]),
                         "role_ap_scenario_2": r4(ev.role_ap["scenario_2"][a, r])})
    return rows


def read_ground_truth(anno: str, coco: str):
    """The evaluated people of the V-COCO file ``anno`` with the boxes of the COCO instances ``coco``."""
    from pipeline.datasets.vcoco import read_coco_instances, read_vcoco
    from pipeline.metrics.vcoco import vcoco_ground_truth

    if not coco:
        raise ValueError("--benchmark vcoco needs --coco: the COCO instances with the boxes "
                         "(instances_vcoco_all_2014.json, made by the official script_pick_annotations.py)")
    return vcoco_ground_truth(read_vcoco(anno), read_coco_instances(coco), anno)


def evaluate_vcoco(results: str, anno: str, coco: str, fmt: str = "auto", max_reject_fraction: float = 0.05,
                   gt=None) -> dict:
    """Reads ``results`` and scores it against the V-COCO file ``anno`` with the boxes of ``coco``.

    Args:
        fmt: ``auto``, ``list`` (the official .pkl / .json) or ``table``.
        gt: the ground truth already read (:func:`read_ground_truth`), else read here.

    Raises:
        pipeline.rejects.DataLossError: more rows rejected than ``max_reject_fraction``.
        ValueError, FileNotFoundError: unreadable inputs (the message names the file).
    """
    from pipeline.metrics.vcoco import vcoco_eval
    from pipeline.rejects import check_loss, top_reasons
    from pipeline.results.vcoco import read_vcoco_results

    t0 = time.perf_counter()
    gt = gt if gt is not None else read_ground_truth(anno, coco)
    t1 = time.perf_counter()
    res = read_vcoco_results(results, gt.image_ids, gt.actions, gt.roles, fmt)
    t2 = time.perf_counter()
    summary = check_loss(f"{results} (V-COCO {res.format})", res.total, [r["reason"] for r in res.rejects],
                         max_reject_fraction, "rejects.csv")
    if summary:
        log.warning("%s", summary)
    ev = vcoco_eval(gt, **res.arrays())
    t3 = time.perf_counter()
    metrics = vcoco_metrics(ev)
    metrics.update(num_images=int(len(gt.image_ids)), num_people=int(len(gt.person_box)),
                   num_annotated_people=int((~gt.unannotated).sum()), num_detected_people=int(len(res.entry_image)),
                   num_rows=len(res), num_rejected=len(res.rejects))
    notes = list(res.notes)
    if ev.skipped_no_person:
        notes.append(f"{ev.skipped_no_person} scored values on images without any person were skipped (the "
                     "official code stops there)")
    return {"benchmark": "vcoco", "metrics": metrics, "per_class": per_class_rows(ev), "eval": ev,
            "rejects": res.rejects, "total": res.total, "rows": len(res), "format": res.format,
            "reject_summary": top_reasons(r["reason"] for r in res.rejects) if res.rejects else "", "notes": notes,
            "sources": {"results": results, "annotation": anno, "coco": coco},
            "timing": {"read_annotations_s": round(t1 - t0, 3), "read_results_s": round(t2 - t1, 3),
                       "evaluate_s": round(t3 - t2, 3)}}


def chosen_curves(ev, wanted: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scenario-1 precision-recall curves of the best, median and worst (action, role) by AP."""
    entries = [(ev.role_ap["scenario_1"][a, r - 1], a, r) for (a, r, s) in ev.curves
               if s == "scenario_1" and np.isfinite(ev.role_ap["scenario_1"][a, r - 1])]
    entries.sort(key=lambda e: -e[0])
    picks = list(dict.fromkeys(entries[i] for i in (0, len(entries) // 2, len(entries) - 1))) if entries else []
    return {f"{ev.actions[a]}_{ev.roles[a][r]} (AP {100 * ap:.1f})": ev.curves[(a, r, "scenario_1")]
            for ap, a, r in picks[:wanted]}


def write_outputs(result: dict, out: str) -> None:
    """``metrics.json``, ``per_class_ap.csv``, ``rejects.csv``, ``pr/`` and ``report.md``, replacing ``out``."""
    from pipeline import storage
    from pipeline.report.plots import pr_rows, save_pr_png, write_csv

    with storage.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        metrics = {"benchmark": "vcoco", **result["metrics"], "format": result["format"], "rows_scored": result["rows"],
                   "rows_read": result["total"], "seconds": result["seconds"], "timing": result["timing"],
                   "sources": result["sources"], "notes": result["notes"]}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_csv(result["per_class"], tmp / "per_class_ap.csv")
        write_csv(result["rejects"], tmp / "rejects.csv", ["source", "item", "reason"])
        (tmp / "pr").mkdir()
        curves = chosen_curves(result["eval"])
        for label, (rec, prec) in curves.items():
            write_csv(pr_rows(rec, prec), tmp / "pr" / f"{label.split(' ')[0]}.csv", ["recall", "precision"])
        save_pr_png(curves, "V-COCO role AP, scenario 1: precision-recall", tmp / "pr" / "pr.png",
                    "" if curves else "nothing ranked")
        (tmp / "report.md").write_text(report_markdown(result))


def _cell(v) -> str:
    return "" if v is None or v == "" else (f"{v:.2f}" if isinstance(v, float) else str(v))


def report_markdown(result: dict) -> str:
    """The report of :func:`evaluate_vcoco`: the means, every (action, role), what was read."""
    from pipeline.results.results_markdown import input_lines

    m = result["metrics"]
    out = ["# V-COCO evaluation", "",
           "Official protocol (`vsrl_eval.py`, s-gupta/v-coco): a detected person is matched to the COCO person of "
           "highest IoU (+1 pixel boxes) in its image and skipped when V-COCO does not annotate that person; a true "
           "positive needs the action, person IoU >= 0.5 and, for role AP, role IoU >= 0.5 with that person's role "
           "object (a missing role object: scenario 1 wants an empty box, scenario 2 anything); duplicates are "
           "false positives; VOC all-points AP; percent.", "",
           "| | role AP, scenario 1 | role AP, scenario 2 | agent AP |", "|---|---|---|---|",
           f"| official mean (25 action-roles, `point` included; agent: 26 actions) | {_cell(m['role_ap_scenario_1'])} "
           f"| {_cell(m['role_ap_scenario_2'])} | {_cell(m['agent_ap'])} |",
           f"| without `point` (24 action-roles, as most papers) | {_cell(m['role_ap_scenario_1_without_point'])} | "
           f"{_cell(m['role_ap_scenario_2_without_point'])} | |", "",
           "| action | role | positives | ranked | agent AP | role AP S1 | role AP S2 |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['action']} | {r['role']} | {r['positives']} | {r['ranked']} | {_cell(r['agent_ap'])} | "
            f"{_cell(r['role_ap_scenario_1'])} | {_cell(r['role_ap_scenario_2'])} |" for r in result["per_class"]]
    out += input_lines(result, f"{result['rows']:,} values scored, {len(result['rejects']):,} rejected of "
                               f"{result['total']:,}; {m['num_images']:,} images, {m['num_annotated_people']:,} "
                               f"annotated of {m['num_people']:,} people")
    return "\n".join(out)



def evaluate_prepared(prepared: str | Path, official_results: str | Path, space):
    """The evaluate stage's V-COCO detection branch: the run's official results list (score_regions'
    ``vcoco_results.pkl``) scored against the test ground truth prepare wrote (``<prepared>/vcoco/``).

    Returns:
        (metrics, per-class columns by class of ``space``: ``det_ap`` = the class's own official AP (role AP
        scenario 1; agent AP for an ``<action>_agent`` class), ``det_ap_scenario_2``, ``agent_ap`` of its
        action; class -> its (recall, precision) curve, results file).

    Raises:
        FileNotFoundError: no ground truth or no results file (the message says which stage writes it).
    """
    from pipeline.datasets.vcoco import GROUND_TRUTH, GROUND_TRUTH_FILES
    from pipeline.results.vcoco import OFFICIAL_FILE

    gt = Path(prepared) / GROUND_TRUTH
    results = Path(official_results) / OFFICIAL_FILE
    if not (gt / GROUND_TRUTH_FILES[0]).exists():
        raise FileNotFoundError(f"evaluate needs V-COCO's test ground truth at {gt} (written by prepare for "
                                "prepare.dataset vcoco: run prepare)")
    if not results.exists():
        readme = Path(official_results) / "README.txt"
        why = readme.read_text().strip() if readme.exists() else "no such file"
        raise FileNotFoundError(f"evaluate needs the V-COCO results list {results} (score_regions "
                                f"--official-results writes it): {why}")
    result = evaluate_vcoco(str(results), str(gt / GROUND_TRUTH_FILES[0]), str(gt / GROUND_TRUTH_FILES[1]), "list",
                            max_reject_fraction=1.0)
    ev = result["eval"]
    slot = {f"{a}_{r}": (i, j) for i, (a, rs) in enumerate(zip(ev.actions, ev.roles)) for j, r in enumerate(rs)}
    C = len(space)
    columns = {k: np.full(C, np.nan) for k in ("det_ap", "det_ap_scenario_2", "agent_ap")}
    curves = {}
    for h, name in enumerate(space.names):
        if name not in slot:
            raise ValueError(f"class {name!r} of the prepared dataset is not a key of {gt / GROUND_TRUTH_FILES[0]}")
        a, j = slot[name]
        columns["agent_ap"][h] = ev.agent_ap[a]
        if j == 0:
            columns["det_ap"][h] = ev.agent_ap[a]
            curves[h] = ev.curves.get((a, 0, "agent"), (np.zeros(0), np.zeros(0)))
        else:
            columns["det_ap"][h] = ev.role_ap["scenario_1"][a, j - 1]
            columns["det_ap_scenario_2"][h] = ev.role_ap["scenario_2"][a, j - 1]
            curves[h] = ev.curves.get((a, j, "scenario_1"), (np.zeros(0), np.zeros(0)))
    metrics = {"protocol": "V-COCO official (vsrl_eval.py)", **result["metrics"]}
    metrics.pop("per_action")
    metrics["notes"] = result["notes"]
    return metrics, columns, curves.__getitem__, str(results)


def detection_section(d: dict) -> list[str]:
    """The evaluation report's V-COCO section (Markdown lines) of the metrics of :func:`evaluate_prepared`."""
    return ["## V-COCO HOI detection (official role AP)", "",
            "| | role AP, scenario 1 | role AP, scenario 2 | agent AP |", "|---|---|---|---|",
            f"| **this run**, official mean (25 action-roles, `point` included; agent: 26 actions) | "
            f"{_cell(d['role_ap_scenario_1'])} | {_cell(d['role_ap_scenario_2'])} | {_cell(d['agent_ap'])} |",
            f"| **this run**, without `point` (as most papers) | {_cell(d['role_ap_scenario_1_without_point'])} | "
            f"{_cell(d['role_ap_scenario_2_without_point'])} | |", "",
            f"{d['num_images']} test images, {d['num_annotated_people']} annotated of {d['num_people']} people; "
            f"{d['num_detected_people']} detected people. Per class (its role AP, or agent AP for an action without a "
            "role): reports/per_class_ap.csv. The protocol: docs/evaluation.md.", ""]
