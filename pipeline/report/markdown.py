"""The evaluation page: our numbers beside the DEFR paper's tables."""
from __future__ import annotations

# DEFR paper (ECCV 2022), in percent. Table 2/3/9: HICO classification; Table 10: HICO-DET, detector of
# DRG/SCG fine-tuned on HICO-DET. The paper reports no known-object HICO-DET numbers.
PAPER = {
    "classification": [
        {"method": "DEFR/16 (ViT-B/16, CLIP)", "map": 65.6, "few1": 52.7, "few5": 56.9, "few10": 57.2},
        {"method": "DEFR/32 (ViT-B/32, CLIP)", "map": 60.5},
        {"method": "DEFR ResNet-101", "map": 53.6},
        {"method": "DEFR ResNet-50", "map": 49.7},
        {"method": "HAKE (detection + pose + PaSta)", "map": 47.1, "few1": 25.4, "few5": 32.5, "few10": 33.7},
    ],
    "detection": [
        {"method": "DEFR ViT-B/16", "full": 32.35, "rare": 33.45, "non_rare": 32.02},
        {"method": "DEFR ViT-L/14", "full": 35.36, "rare": 38.28, "non_rare": 34.49},
        {"method": "CDN-L (trained on HICO-DET)", "full": 32.07, "rare": 27.19, "non_rare": 33.53},
    ],
}


def _cell(value) -> str:
    return "" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def evaluation_markdown(classification: dict | None, detection: dict | None, provenance: dict,
                        demo: bool) -> str:
    """Markdown for reports/evaluation.md from the metrics dictionaries written by the evaluate stage."""
    out = ["# Evaluation", ""]
    if demo:
        out += ["> **DEMO DATA**: synthetic images and/or a tiny random model or oracle boxes. The numbers",
                "> check that the pipeline runs end to end; they are not comparable with the paper.", ""]
    out += ["Official protocols: HICO classification (ambiguous labels removed, unknown = negative) and",
            "HICO-DET (ho-rcnn matching, min IoU of human and object >= 0.5); 11-point AP; percent.", ""]
    if classification is not None:
        c = classification
        n = c["num_classes"]
        out += ["## HICO classification", ""]
        out += _table(["method", "mAP", "Few@1", "Few@5", "Few@10"],
                      [["**this run**", c["map"], c["few1"], c["few5"], c["few10"]]]
                      + [[p["method"], p["map"], p.get("few1"), p.get("few5"), p.get("few10")]
                         for p in PAPER["classification"]])
        out += ["", f"Classes evaluated (with a test positive): {n['evaluated']}; Few@1/5/10 classes: "
                f"{n['few1']} / {n['few5']} / {n['few10']} (paper: 49 / 125 / 162). Few@1 with DEFR's "
                f"49-class list: {_cell(c['few1_defr'])} ({n['few1_defr']} classes). Known-object mAP: "
                f"{_cell(c['known_object_map'])}.", ""]
    if detection is not None:
        d = detection
        out += ["## HICO-DET detection", ""]
        rows = [["**this run** (default)", d["default"]["full"], d["default"]["rare"], d["default"]["non_rare"]],
                ["**this run** (known object)", d["known_object"]["full"], d["known_object"]["rare"],
                 d["known_object"]["non_rare"]]]
        rows += [[p["method"], p["full"], p["rare"], p["non_rare"]] for p in PAPER["detection"]]
        out += _table(["method", "Full", "Rare", "Non-rare"], rows)
        n = d["num_classes"]
        out += ["", f"Classes with test pairs: {n['full']} (rare {n['rare']}, non-rare {n['non_rare']}); "
                f"{d['num_detections']} detections ranked.", ""]
    out += ["## Inputs", ""] + [f"- `{k}`: {v}" for k, v in provenance.items()] + [""]
    return "\n".join(out)
