"""The compact result block that `make demo` prints after `dvc repro` (not a DVC stage; reads metrics/).

    python -m stage_support.summary [--metrics metrics]

Numbers are in percent. When any input was produced by a demo-only component (the synthetic data, the
tiny random-init model, the oracle boxes), every line says DEMO ONLY.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _pct(value) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


def lines(metrics_dir: Path = Path("metrics"), report: str = "reports/evaluation.md") -> list[str]:
    """The summary as lines of text (empty metrics files give 'not evaluated' lines, never a crash)."""
    train, cls, det = (_read(metrics_dir / f"{n}.json") for n in ("train", "classification", "detection"))
    demo = bool(train.get("demo_only")) or "demo" in json.dumps([cls.get("note", ""), det.get("note", "")]).lower()
    tag = "DEMO ONLY " if demo else ""
    out = [f"== {tag}results" + (" (synthetic data, tiny random-init model, oracle boxes: they say nothing "
                                  "about DEFR; README 'The demo')" if demo else "") + " =="]
    if train:
        val = train.get("best_val_map")  # percent, as every mAP in metrics/
        out.append(f"{tag}train      best val mAP {_pct(val)}  (epoch {train.get('best_epoch')} of "
                   f"{train.get('epochs')}, resumed {train.get('resumes', 0)}x)")
    if cls.get("map") is not None:
        n = cls.get("num_classes", {})
        few = "  ".join(f"Few@{k} {_pct(cls.get(f'few{k}'))} ({n.get(f'few{k}', 0)})" for k in (1, 5, 10)
                        if f"few{k}" in cls)
        out.append(f"{tag}classify   mAP {_pct(cls['map'])} ({n.get('evaluated', '?')} classes)  known object "
                   f"{_pct(cls.get('known_object_map'))}  {few}".rstrip())
    elif cls:
        out.append(f"{tag}classify   not evaluated: {cls.get('skipped') or cls.get('reason') or 'no result'}")
    if isinstance(det.get("default"), dict):
        for setting in ("default", "known_object"):
            d = det.get(setting) or {}
            out.append(f"{tag}HOI det.   {setting.replace('_', ' '):12s} Full {_pct(d.get('full'))}  Rare "
                       f"{_pct(d.get('rare'))}  Non-rare {_pct(d.get('non_rare'))}")
    elif det.get("role_ap_scenario_1", "absent") != "absent":   # V-COCO
        out.append(f"{tag}V-COCO     role AP S1 {_pct(det['role_ap_scenario_1'])}  S2 {_pct(det.get('role_ap_scenario_2'))}"
                   f"  agent AP {_pct(det.get('agent_ap'))}")
    elif det:
        out.append(f"{tag}HOI det.   not evaluated: {det.get('skipped') or det.get('reason') or 'no result'}")
    for name, m in (("classify", cls), ("HOI det.", det)):
        z = m.get("zero_shot") if isinstance(m, dict) else None
        if z:
            out.append(f"{tag}zero-shot  {z['setting'].upper():5s} {name:8s} Full {_pct(z.get('full'))}  Seen "
                       f"{_pct(z.get('seen'))}  Unseen {_pct(z.get('unseen'))} ({z['num_classes']['unseen']} classes; "
                       f"chance {_pct(z.get('chance_unseen')).strip()})")
    out.append(f"report     {report}, reports/per_class_ap.csv")
    out.append("plots      plots/eval/*.png (long tail, precision-recall), plots/attention/, plots/embeddings/, "
               "plots/train/history.csv  (dvc plots show)")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default="metrics")
    args = ap.parse_args(argv)
    print("\n".join(lines(Path(args.metrics))))


if __name__ == "__main__":
    main()
