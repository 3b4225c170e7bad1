"""The `defr` command for real on real photographs (shared/data/photos: three photos, hand-drawn boxes).

The model is a tiny random ViT (DEMO ONLY: its scores mean nothing), so what is tested is what must hold
whatever the scores: which pairs exist, which classes they may take, what is drawn, what is reported.
"""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import pipeline.cli.commands as cli
from pipeline.classes.space import ClassInfo, ClassSpace
from pipeline.classes.coco import normalize
from pipeline.model import ModelConfig, build_model, save_checkpoint
from tests.conftest import require_module

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PERSON, DOG, HORSE = (190, 97, 276, 376), (64, 262, 206, 346), (404, 139, 603, 346)  # boxes.json, person.jpg
# A label space that is not HICO's, with classes of objects in the photos and one without an object.
SMALL = ClassSpace([ClassInfo("walk dog", "walk", "dog", 16), ClassInfo("ride horse", "ride", "horse", 17),
                    ClassInfo("feed horse", "feed", "horse", 17), ClassInfo("ride bicycle", "ride", "bicycle", 1),
                    ClassInfo("wave", "wave", None, None)])


def _checkpoint(path: Path, space: ClassSpace) -> Path:
    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=len(space),
                                    classes=space.to_list(), metadata={"demo_only": True}), None, seed=1)
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("defr_models")
    return {"hico": _checkpoint(root / "hico", ClassSpace.hico()), "small": _checkpoint(root / "small", SMALL)}


def _defr(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _kept_boxes(detections: list[dict], threshold: float = 0.2, nms: float = 0.5) -> tuple[int, int]:
    """(humans, objects) left by the CLI's default pair rule, recomputed here in plain Python: score >=
    ``threshold``, then greedy non-maximum suppression at IoU > ``nms`` within each category."""
    kept: list[dict] = []
    for d in sorted((d for d in detections if d["score"] >= threshold), key=lambda d: -d["score"]):
        if all(k["category"] != d["category"] or _iou(k["box"], d["box"]) <= nms for k in kept):
            kept.append(d)
    humans = sum(k["category"] == "person" for k in kept)
    return humans, len(kept) - humans


@pytest.mark.smoke  # make test-fast: the defr command
def test_photos_with_hand_drawn_boxes(shared_photos, models, tmp_path, capsys):
    code, out = _defr(capsys, "detect", shared_photos, "--model", models["hico"], "--boxes",
                      shared_photos / "boxes.json", "--out", tmp_path, "--attention", "--local")
    assert code == 0
    assert "DEMO ONLY model" in out and "scores mean nothing" in out
    hois = _jsonl(tmp_path / "hoi_detections.jsonl")
    assert hois and {h["image"] for h in hois} == {"person"}
    # person.jpg: the pairs person-dog and person-horse, with HOIs of those objects only.
    pairs = {(tuple(h["human_box"]), tuple(h["object_box"])) for h in hois}
    assert pairs == {(PERSON, DOG), (PERSON, HORSE)}
    for h in hois:
        assert h["object"] == ("dog" if tuple(h["object_box"]) == DOG else "horse")
        assert h["name"] == f"{h['verb']} {h['object']}" and 0 < h["score"] <= 1
    assert {h["object"] for h in hois} == {"dog", "horse"}
    assert pq.read_table(tmp_path / "hoi_detections.parquet").num_rows == len(hois)
    # dog.jpg and horses.jpg: no person, no pairs, and a line that says so.
    assert "dog.jpg: no pairs: no person among the 3 boxes" in out
    assert "horses.jpg: no pairs: no person among the 5 boxes" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(i["image"], i["pairs"]) for i in summary["images"]] == [("dog", 0), ("horses", 0), ("person", 2)]
    assert summary["rejects"] == [] and summary["info"]["mode"] == "in-process"
    # One annotated picture per photo, same size, changed along the drawn boxes.
    for name in ("person", "dog", "horses"):
        assert (tmp_path / "pictures" / f"{name}.png").exists()
    photo = np.asarray(Image.open(shared_photos / "person.jpg").convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(tmp_path / "pictures" / "person.png")).astype(int)
    assert drawn.shape == photo.shape
    changed = np.abs(drawn - photo).sum(axis=2) > 30   # JPEG vs PNG of the same pixels: equal where not drawn
    x1, y1, x2, y2 = PERSON
    assert changed[y1 + 60:y2 - 60, x1].mean() > 0.9 and changed[y1 + 60:y2 - 60, x2].mean() > 0.9
    assert changed[y1 + 60:y2 - 60, x1 + 20:x2 - 20].mean() < 0.2        # inside the box: the photo
    assert not changed[10:60, 10:150].any()                              # sky, far from every box
    attention = Image.open(tmp_path / "attention" / "person.png")
    assert attention.width > attention.height and list((tmp_path / "attention").iterdir()) == [tmp_path / "attention" / "person.png"]


def test_names_come_from_the_models_own_classes(shared_photos, models, tmp_path, capsys):
    code, out = _defr(capsys, "detect", shared_photos / "person.jpg", "--model", models["small"], "--boxes",
                      shared_photos / "boxes.json", "--out", tmp_path, "--no-pictures")
    assert code == 0
    hois = _jsonl(tmp_path / "hoi_detections.jsonl")
    assert {h["name"] for h in hois} == {"walk dog", "ride horse", "feed horse"}
    assert all(0 <= h["hoi"] < 5 and SMALL[h["hoi"]].name == h["name"] for h in hois)
    assert not (tmp_path / "pictures").exists()


def test_a_corrupt_file_is_reported_and_the_others_processed(shared_photos, models, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("dog.jpg", "horses.jpg"):
        shutil.copy(shared_photos / name, photos / name)
    (photos / "person.jpg").write_bytes((shared_photos / "person.jpg").read_bytes()[:5000])   # truncated
    (tmp_path / "list.txt").write_text("photos/person.jpg\nphotos/dog.jpg\nphotos/horses.jpg\nphotos/gone.jpg\n")
    code, out = _defr(capsys, "detect", tmp_path / "list.txt", "--model", models["hico"], "--boxes",
                      shared_photos / "boxes.json", "--out", tmp_path / "out", "--local")
    assert code == 0
    assert "person.jpg: not used: cannot decode image" in out
    assert "gone.jpg: not used: missing image file" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    status = {i["file_name"]: i["status"] for i in summary["images"]}
    assert status == {"person.jpg": "rejected", "dog.jpg": "no pairs", "horses.jpg": "no pairs", "gone.jpg": "rejected"}
    assert sorted(p.name for p in (tmp_path / "out" / "pictures").iterdir()) == ["dog.png", "horses.png"]
    # Every image unusable: exit status 1.
    code, out = _defr(capsys, "detect", photos / "person.jpg", "--model", models["hico"], "--boxes",
                      shared_photos / "boxes.json", "--out", tmp_path / "none")
    assert code == 1 and "not used: cannot decode image" in out


def test_mmdetection_backend_with_random_weights(shared_photos, models, tmp_path, capsys):
    require_module("mmdet.apis", "MMDetection stack not installed: `make install-detect` (scripts/install_mmdet.sh)")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    # Random heads favour a few classes; seed 33 is the first whose head gives a person >= 0.2 (and many
    # other boxes) on person.jpg (torch 2.14.1, mmdet 3.3.0), so that pairs exist and the gating is tested.
    # (The seed only picks an input; every count below is derived from the detections written.)
    code, out = _defr(capsys, "detect", shared_photos, tmp_path / "broken.jpg", "--model", models["hico"],
                      "--detector", "rtmdet_tiny_8xb32-300e_coco", "--detector-checkpoint", "random",
                      "--detector-seed", 33, "--detector-scale", 320, 320, "--out", tmp_path / "out", "--local")
    assert code == 0 and "random detector weights" in out and "broken.jpg: not used: cannot decode image" in out
    detections = _jsonl(tmp_path / "out" / "detections.jsonl")
    hois = _jsonl(tmp_path / "out" / "hoi_detections.jsonl")
    assert "person" in {d["image"] for d in detections}
    assert all(d["score"] >= 0.05 for d in detections)
    sizes = {n: Image.open(shared_photos / f"{n}.jpg").size for n in ("person", "dog", "horses")}
    for d in detections:
        w, h = sizes[d["image"]]
        assert 0 <= d["box"][0] < d["box"][2] <= w and 0 <= d["box"][1] < d["box"][3] <= h
    # Each (pair, class) takes a class of its object box's detected category (random boxes, real gating).
    # Random heads give one box several classes (class-wise NMS), hence a set of categories per box.
    categories = {}
    for d in detections:
        categories.setdefault((d["image"], tuple(d["box"])), set()).add(d["category"])
    for h in hois:
        assert normalize(h["object"]) in {normalize(c) for c in categories[(h["image"], tuple(h["object_box"]))]}
        assert "person" in categories[(h["image"], tuple(h["human_box"]))]
    assert {h["image"] for h in hois} == {"person"} and len({h["object"] for h in hois}) > 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pairs = {im["image"]: im.get("pairs") for im in summary["images"]}
    kept = {name: _kept_boxes([d for d in detections if d["image"] == name]) for name in sizes}
    for name, (humans, objects) in kept.items():
        # the documented pair rule (pipeline/regions/pairs.py, after UPT): every kept human x every other
        # kept box, at most 15 humans and 15 objects (the CLI defaults)
        humans, objects = min(humans, 15), min(objects, 15)
        assert pairs[name] == humans * (humans + objects - 1), (name, humans, objects, pairs)
    assert pairs["person"] > 0 and pairs["dog"] == pairs["horses"] == 0
    assert {im["image"] for im in summary["images"] if im["status"] == "rejected"} == {"broken"}
    for name in ("person", "dog", "horses"):
        assert (tmp_path / "out" / "pictures" / f"{name}.png").exists()


@pytest.mark.slow
def test_ray_gives_what_the_process_gives(shared_photos, models, tmp_path, capsys):
    import ray

    try:
        code, out = _defr(capsys, "detect", shared_photos, "--model", models["hico"], "--boxes",
                          shared_photos / "boxes.json", "--out", tmp_path / "ray", "--ray", "--batch-size", 2)
    finally:
        ray.shutdown()
    assert code == 0
    # the mode the run reports, not the word "ray" (which the output path alone would contain)
    assert json.loads((tmp_path / "ray" / "summary.json").read_text())["info"]["mode"] == "ray"
    assert "; ray, " in out.splitlines()[-1], out[-500:]
    code, _ = _defr(capsys, "detect", shared_photos, "--model", models["hico"], "--boxes",
                    shared_photos / "boxes.json", "--out", tmp_path / "local", "--local")
    assert (tmp_path / "ray" / "hoi_detections.jsonl").read_text() == (tmp_path / "local" / "hoi_detections.jsonl").read_text()
    for name in ("person", "dog", "horses"):
        assert (tmp_path / "ray" / "pictures" / f"{name}.png").read_bytes() == \
               (tmp_path / "local" / "pictures" / f"{name}.png").read_bytes()


def test_classify_names_the_top_classes_and_draws_a_contact_sheet(shared_photos, models, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    code, out = _defr(capsys, "classify", shared_photos, tmp_path / "broken.jpg", "--model", models["small"],
                      "--out", tmp_path / "out", "--top-k", 2)
    assert code == 0 and "DEMO ONLY" in out and "broken.jpg: not used: cannot decode image" in out
    result = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert [i["image"] for i in result["images"]] == ["dog", "horses", "person"]
    for im in result["images"]:
        assert len(im["top"]) == 2 and all(t["name"] in SMALL.names for t in im["top"])
        assert im["top"][0]["logit"] >= im["top"][1]["logit"]
    sheet = Image.open(tmp_path / "out" / "contact_sheet.png")
    assert sheet.width >= 3 * 240


def test_a_model_without_object_classes_cannot_detect(shared_photos, tmp_path, capsys):
    space = ClassSpace([ClassInfo("dancing"), ClassInfo("fishing")])
    model = _checkpoint(tmp_path / "mpii", space)
    code = cli.main(["detect", str(shared_photos / "person.jpg"), "--model", str(model), "--boxes",
                     str(shared_photos / "boxes.json"), "--out", str(tmp_path / "out")])
    assert code == 2 and "use `defr classify`" in capsys.readouterr().err


def test_the_defr_command_is_installed_and_lists_its_subcommands(capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["defr"] == "pipeline.cli:main"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "detect" in help_text and "classify" in help_text


def _pictures(folder: Path, n: int) -> Path:
    """``n`` small JPEGs (img00.jpg, ...) and a boxes file giving each a person and a horse."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    boxes = {}
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.jpg")
        boxes[f"img{i:02d}.jpg"] = [{"category": "person", "box": [10, 10, 60, 90], "score": 0.9},
                                    {"category": "horse", "box": [50, 30, 120, 90], "score": 0.8}]
    (folder / "boxes.json").write_text(json.dumps(boxes))
    return folder


def test_detect_argument_errors_exit_2_naming_the_fix(models, tmp_path, capsys):
    photos = _pictures(tmp_path / "photos", 1)
    image, model, out = photos / "img00.jpg", models["hico"], tmp_path / "out"
    # --detector without its weights (checked before MMDetection is even imported)
    code = cli.main(["detect", str(image), "--model", str(model), "--detector", "rtmdet_tiny_8xb32-300e_coco",
                     "--out", str(out)])
    assert code == 2 and "--detector and --detector-checkpoint go together" in capsys.readouterr().err
    # neither box source
    code = cli.main(["detect", str(image), "--model", str(model), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "give boxes from a detector (--detector) or from a file (--boxes), not neither" in err
    # a boxes file with a score outside [0, 1]: the file is suspect, nothing runs
    bad = json.loads((photos / "boxes.json").read_text())
    bad["img00.jpg"][1]["score"] = 1.7
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code = cli.main(["detect", str(image), "--model", str(model), "--boxes", str(tmp_path / "bad.json"),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"boxes {tmp_path / 'bad.json'}: image " in err
    assert "has scores [0.9, 1.7]; expected [0, 1]" in err
    assert not out.exists()
    # --model is required: argparse's usage error (exit 2) names it
    with pytest.raises(SystemExit) as exit_:
        cli.main(["detect", str(image), "--boxes", str(photos / "boxes.json"), "--out", str(out)])
    assert exit_.value.code == 2 and "the following arguments are required: --model" in capsys.readouterr().err


def test_detect_with_both_box_sources_is_refused(models, tmp_path, capsys):
    require_module("mmdet.apis", "MMDetection stack not installed: `make install-detect` (scripts/install_mmdet.sh)")
    photos = _pictures(tmp_path / "photos", 1)
    code = cli.main(["detect", str(photos / "img00.jpg"), "--model", str(models["hico"]), "--detector",
                     "rtmdet_tiny_8xb32-300e_coco", "--detector-checkpoint", "random", "--boxes",
                     str(photos / "boxes.json"), "--out", str(tmp_path / "out")])
    assert code == 2 and "not both" in capsys.readouterr().err


def test_classify_exits_1_when_no_image_can_be_used(models, tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    code, out = _defr(capsys, "classify", tmp_path / "a.jpg", tmp_path / "b.jpg", "--model", models["small"],
                      "--out", tmp_path / "out")
    assert code == 1
    assert "a.jpg: not used: cannot decode image" in out and "b.jpg: not used: cannot decode image" in out
    assert "top 5 classes of 0 image(s)" in out


def test_more_than_25_images_are_summed_up_after_the_first_20(models, tmp_path, capsys):
    """SHOWN (20) images one per line, then one line counting the rest; every image is in summary.json."""
    photos = _pictures(tmp_path / "photos", 27)
    (photos / "img26.jpg").write_bytes(b"not a jpeg")       # one of the rest cannot be used
    code, out = _defr(capsys, "detect", photos, "--model", models["small"], "--boxes", photos / "boxes.json",
                      "--out", tmp_path / "out", "--no-pictures", "--local")
    assert code == 0
    lines = out.splitlines()
    listed = [line for line in lines if line.startswith("img")]
    assert [line.split(":")[0] for line in listed] == [f"img{i:02d}.jpg" for i in range(cli.SHOWN)]
    assert all("1 pair(s) from 2 boxes (1 person)" in line for line in listed)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["images"]) == 27
    assert f"... and 7 more image(s): 6 with pairs, 0 without, 1 not used (all in " in out
    # 27 images with 2 boxes each, 26 readable: 26 pairs, each scored against the 3 horse classes of SMALL
    hois = _jsonl(tmp_path / "out" / "hoi_detections.jsonl")
    assert len({h["image"] for h in hois}) == 26 and {h["name"] for h in hois} == {"ride horse", "feed horse"}
