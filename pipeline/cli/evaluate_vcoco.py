"""``defr evaluate --benchmark vcoco``: V-COCO's agent AP and role AP (scenarios 1 and 2) of any model's
results, equal to the official ``vsrl_eval.py`` (:mod:`pipeline.report.vcoco`, docs/evaluation.md).

    defr evaluate vcoco_dets.pkl --benchmark vcoco --anno vcoco_test.json \\
        --coco instances_vcoco_all_2014.json --out eval/

``--format``: ``auto`` (by extension), ``detr`` (a result list: the official list of per-person dicts, .pkl
or .json) or ``table`` (one row per person, action and role).
"""
from __future__ import annotations

import time

FORMATS = {"auto": "auto", "detr": "list", "table": "table"}


def run_vcoco(args, start: float | None = None) -> int:
    """Runs ``defr evaluate --benchmark vcoco``; prints the means and where everything was written."""
    from pipeline.report.vcoco import evaluate_vcoco, write_outputs

    start = time.perf_counter() if start is None else start
    if args.format not in FORMATS:
        raise ValueError(f"--format {args.format} for --benchmark vcoco: expected auto, detr (the official list "
                         "of per-person dicts) or table")
    if args.compare:
        raise ValueError("--compare: no published V-COCO numbers are listed (drop --compare)")
    if not args.coco:
        raise ValueError("--benchmark vcoco needs --coco: the COCO instances with the boxes "
                         "(instances_vcoco_all_2014.json, made by the official script_pick_annotations.py)")
    result = evaluate_vcoco(args.results, args.anno, args.coco, FORMATS[args.format], args.max_reject_fraction)
    result["seconds"] = round(time.perf_counter() - start, 2)
    write_outputs(result, args.out)
    m = result["metrics"]
    for s in ("scenario_1", "scenario_2"):
        print(f"role AP {s.replace('_', ' ')}: {_f(m[f'role_ap_{s}'])} (official, 25 action-roles)  "
              f"{_f(m[f'role_ap_{s}_without_point'])} (without point)")
    print(f"agent AP: {_f(m['agent_ap'])} (official, 26 actions)")
    if result["rejects"]:
        print(f"{len(result['rejects'])} of {result['total']} rows rejected: {result['reject_summary']} "
              f"(listed in {args.out}/rejects.csv)")
    print(f"{result['format']}: {result['rows']} values scored in {result['seconds']} s; report {args.out}/report.md")
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
