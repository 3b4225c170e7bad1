"""The evaluation page: our numbers beside the DEFR paper's tables for the dataset evaluated."""
from __future__ import annotations

from pipeline.report.evaluation import CHANCE_DRAWS

# DEFR paper (ECCV 2022), in percent, by dataset. HICO: Table 2/3/9 classification; Table 10 HICO-DET with the
# detector of DRG/SCG fine-tuned on HICO-DET (no known-object numbers in the paper). MPII: Table 4, on the
# 6,987-image validation split.
PAPER = {
    "hico": {
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
    },
    "mpii": {
        "classification": [
            {"method": "DEFR (ViT-B/16)", "map": 55.3},
            {"method": "DEFR (ResNet-101)", "map": 43.6},
            {"method": "Pairwise-Part (ResNet-101)", "map": 32.0},
            {"method": "Girdhar et al. (ResNet-101)", "map": 30.6},
            {"method": "R*CNN (VGG16)", "map": 21.7},
        ],
    },
}
TITLES = {"hico": ("HICO classification", "HICO-DET detection"), "mpii": ("MPII activity classification", "")}


def _cell(value) -> str:
    return "" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _multi_label(c: dict, dataset: str) -> list[str]:
    n = c["num_classes"]
    paper = PAPER.get(dataset, {}).get("classification", [])
    out = [f"## {TITLES.get(dataset, ('Classification (' + dataset + ')',))[0]}", ""]
    out += _table(["method", "mAP", "Few@1", "Few@5", "Few@10"],
                  [["**this run**", c["map"], c["few1"], c["few5"], c["few10"]]]
                  + [[p["method"], p["map"], p.get("few1"), p.get("few5"), p.get("few10")] for p in paper])
    text = (f"Classes evaluated (with a test positive): {n['evaluated']}; Few@1/5/10 classes: "
            f"{n['few1']} / {n['few5']} / {n['few10']}")
    if dataset == "hico":
        text += (f" (paper: 49 / 125 / 162). Few@1 with DEFR's 49-class list: {_cell(c.get('few1_defr'))} "
                 f"({n.get('few1_defr')} classes)")
    known = c.get("notes", {}).get("known_object_map") or _cell(c["known_object_map"])
    return out + ["", f"{text}. Known-object mAP: {known}.", ""] + _zero_shot(c.get("zero_shot"), "classification")


def _single_label(c: dict, dataset: str) -> list[str]:
    n = c["num_classes"]
    paper = PAPER.get(dataset, {}).get("classification", [])
    out = [f"## {TITLES.get(dataset, ('Single-label classification (' + dataset + ')',))[0]}", ""]
    out += _table(["method", "mAP, all classes (11-point)", "mAP, classes with a positive (all-points)",
                   "accuracy", "paper mAP (convention not published)"],
                  [["**this run**", c["map_all_classes"], c["map_with_positive"], c["accuracy"], None]]
                  + [[p["method"], None, None, None, p["map"]] for p in paper])
    return out + ["", "One class per image; scores are the softmax over all classes. Two conventions are "
                  "published and the DEFR paper does not say which it used: the DEFR authors' code takes the "
                  f"11-point AP of every class and the mean over all {n['all']} classes, a class without a test "
                  "positive counting 0; Girdhar et al.'s code takes the all-points AP and the mean over the "
                  f"{n['with_positive']} classes with a test positive. Few@1/5/10 (11-point, classes with 1 / <=5 / "
                  f"<=10 training images): {_cell(c['few1'])} / {_cell(c['few5'])} / {_cell(c['few10'])} "
                  f"({n['few1']} / {n['few5']} / {n['few10']} classes).", ""] + _zero_shot(c.get("zero_shot"),
                                                                                         "classification")


def _detection(d: dict, dataset: str) -> list[str]:
    title = TITLES.get(dataset, ("", ""))[1] or "HOI detection"
    if "not_evaluated" in d:
        return [f"## {title}", "", f"{d['not_evaluated']}.", ""]
    if "role_ap_scenario_1" in d:   # V-COCO's own protocol
        from pipeline.report.vcoco import detection_section

        return detection_section(d)
    out = [f"## {title}", ""]
    rows = [["**this run** (default)", d["default"]["full"], d["default"]["rare"], d["default"]["non_rare"]],
            ["**this run** (known object)", d["known_object"]["full"], d["known_object"]["rare"],
             d["known_object"]["non_rare"]]]
    rows += [[p["method"], p["full"], p["rare"], p["non_rare"]] for p in PAPER.get(dataset, {}).get("detection", [])]
    out += _table(["method", "Full", "Rare", "Non-rare"], rows)
    n = d["num_classes"]
    out += ["", f"Classes with test pairs: {n['full']} (rare {n['rare']}, non-rare {n['non_rare']}); "
            f"{d['num_detections']} detections ranked."]
    notes = d.get("notes", {})
    out += [f"Note ({k}): {v}." for k, v in notes.items()]
    return out + [""] + _zero_shot(d.get("zero_shot"), "detection (default setting)")


def _zero_shot(z: dict | None, what: str) -> list[str]:
    """The Full / Seen / Unseen table of a zero-shot run, with the unseen classes' chance level."""
    if not z:
        return []
    n = z["num_classes"]
    fraction = z.get("positive_fraction_unseen")
    return [f"### Zero-shot {z['setting'].upper()}, {what}", ""] + _table(
        ["", "Full", "Seen", "Unseen", "Unseen at chance"],
        [["**this run**", z["full"], z["seen"], z["unseen"], z["chance_unseen"]]]) + [
        "", f"Classes with a test positive: {n['full']} (seen {n['seen']}, unseen {n['unseen']}). The unseen classes "
        "(GEN-VLKT's list, matched to this dataset's classes) were taken out of the training split by prepare; "
        "DEFR training leaves their classifier rows at their language-embedding initialisation. Chance: the mean AP of the unseen classes over "
        f"{CHANCE_DRAWS} random rankings of the same {'images' if what == 'classification' else 'detections'}"
        + (f" (fraction of positives among the ranked images: {_cell(fraction)})" if fraction is not None else "")
        + f". Lists: {z['source']}.", ""]


def evaluation_markdown(classification: dict | None, detection: dict | None, provenance: dict,
                        demo: bool, dataset: str = "hico", label_mode: str = "multi") -> str:
    """Markdown for reports/evaluation.md from the metrics dictionaries written by the evaluate stage.

    ``detection`` may be ``{"not_evaluated": reason}``: the section says so instead of showing numbers.
    """
    out = ["# Evaluation", ""]
    if demo:
        out += ["> **DEMO DATA**: synthetic images and/or a tiny random model or oracle boxes. The numbers",
                "> check that the pipeline runs end to end; they are not comparable with the paper.", ""]
    if label_mode == "single":
        out += [f"Dataset: {dataset}, single-label. Protocol: mAP of the softmax scores in two conventions (below); "
                "percent.", ""]
    else:
        out += ["Official protocols: HICO classification (ambiguous labels removed, unknown = negative) and",
                "HICO-DET (ho-rcnn matching, min IoU of human and object >= 0.5); 11-point AP; percent.", ""]
        if dataset == "vcoco":
            out[-1:-1] = ["Dataset: vcoco (its action-roles as classes): HICO's classification protocol; HOI "
                          "detection with V-COCO's official role AP (all-points AP)."]
        elif dataset != "hico":
            out[-1:-1] = [f"Dataset: {dataset} (its own classes, with the protocols of HICO)."]
    if classification is not None:
        out += (_single_label if label_mode == "single" else _multi_label)(classification, dataset)
    if detection is not None:
        out += _detection(detection, dataset)
    out += ["## Inputs", ""] + [f"- `{k}`: {v}" for k, v in provenance.items()] + [""]
    return "\n".join(out)
