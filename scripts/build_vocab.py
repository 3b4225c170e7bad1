"""Builds pipeline/assets/hico_vocab.json, the package's own copy of the HICO vocabulary.

    python scripts/build_vocab.py ../shared/data/hico

Class names are facts; the package carries them in this compact format so that nothing at run time
needs the raw annotation files. Run once; the output is committed.
"""
import json
import sys
from pathlib import Path


def build(hico_dir: Path) -> dict:
    records = json.loads((hico_dir / "hico_600_classes.json").read_text())
    coco80_to_hico = json.loads((hico_dir / "coco80tohico80.json").read_text())
    test = json.loads((hico_dir / "instances_test2015.json").read_text())
    objects, verbs = test["objects"], test["verbs"]
    verb_ing = {r["verb"]: r["verb_ing"] for r in records}
    assert [r["hoi"] for r in records] == list(range(600))
    assert [[r["hoi"], r["object_idx"], r["verb_idx"]] for r in records] == test["correspondence"]
    return {
        "about": "HICO / HICO-DET vocabulary (Chao et al.), built by scripts/build_vocab.py; ids 0-based",
        "objects": objects,
        "verbs": verbs,
        "verbs_ing": [verb_ing.get(v, v) for v in verbs],
        "hois": [[r["verb_idx"], r["object_idx"]] for r in records],
        "coco80_to_object": [coco80_to_hico[str(i + 1)] for i in range(80)],
        "hicodet_rare": sorted(test["rare"]),
        "hico_train_positives": [r["hico_cls_train_pos"] for r in records],
        "defr_few1": [r["hoi"] for r in records if r["defr_few1"]],
    }


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "pipeline" / "assets" / "hico_vocab.json"
    out.write_text(json.dumps(build(Path(sys.argv[1])), separators=(",", ":")) + "\n")
    print(f"wrote {out}")
