"""HICO-DET's zero-shot settings: the shipped unseen lists, GEN-VLKT's training rule in prepare, no gradient
for the unseen classifier rows, Full / Seen / Unseen in the evaluate stage and in `defr evaluate`."""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from importlib import resources

import numpy as np
import pyarrow as pa
import pytest
import yaml

from pipeline import schemas, storage
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.classes.space import ClassSpace, read_zero_shot
from pipeline.classes.zero_shot import hico_unseen, unseen_classes
from pipeline.datasets.labels import label_matrix
from pipeline.metrics import hico_classification_map
from pipeline.training.dataset import split_samples
from tests.conftest import DEMO_TEST_PARAMS

VOCAB = hico_vocabulary()
SIZES = {"rf-uc": 120, "nf-uc": 120, "uo": 100, "uv": 84}
SHARED_KEYS = {"rf-uc": "rare_first", "nf-uc": "non_rare_first", "uo": "unseen_object", "uv": "unseen_verb"}


def test_the_shipped_lists_are_the_published_ones_with_their_source(shared_hico):
    asset = json.loads(resources.files("pipeline.assets").joinpath("hico_zero_shot.json").read_text())
    assert asset["source"]["repository"] == "https://github.com/YueLiao/gen-vlkt"
    assert {"commit", "path", "licence", "object"} <= set(asset["source"])
    shared = json.loads((shared_hico / "zero_shot_unseen.json").read_text())
    for setting, size in SIZES.items():
        listed = asset["settings"][setting]["unseen"]
        assert listed == shared[SHARED_KEYS[setting]]          # same classes, same order as the source
        assert len(listed) == len(set(listed)) == size and set(listed) <= set(range(600))
        assert hico_unseen(setting).tolist() == sorted(listed)
    # UO / UV: exactly every class of their unseen objects / verbs (12 objects, 20 verbs)
    objects, verbs = asset["settings"]["uo"]["unseen_objects"], asset["settings"]["uv"]["unseen_verbs"]
    assert len(objects) == 12 and len(verbs) == 20
    assert sorted(asset["settings"]["uo"]["unseen"]) == [h for h in range(600) if VOCAB[h].object in objects]
    assert sorted(asset["settings"]["uv"]["unseen"]) == [h for h in range(600) if VOCAB[h].verb in verbs]
    # rare first: its unseen classes are rare ones; non-rare first: none is
    assert set(hico_unseen("rf-uc")) <= VOCAB.hicodet_rare and not set(hico_unseen("nf-uc")) & VOCAB.hicodet_rare


def test_a_setting_maps_by_hico_names_and_is_refused_where_it_cannot_apply():
    none = pa.array([None] * 3, pa.string())
    table = pa.table({"hoi": [0, 1, 2], "name": ["ride bicycle", "hold cup", "a person waving"], "verb": none,
                      "object": none})
    with pytest.raises(ValueError, match=r"applies to HICO's classes only .* class 2 'a person waving' of dataset "
                                         "'mpii' is not a HICO class"):
        unseen_classes("uv", table, "mpii")
    zs = unseen_classes("uv", table.slice(0, 2), "table")      # 'ride' is an unseen verb, 'hold' is not
    assert zs.setting == "uv" and zs.unseen == (0,)
    with pytest.raises(ValueError, match="prepare.zero_shot 'rf_uc': expected one of none, rf-uc"):
        unseen_classes("rf_uc", table, "hico")


def _prepare(tmp_path, setting: str, n_train: int = 80, n_test: int = 16, **hico):
    """The demo's generate_demo and prepare stages for real, in ``setting``; the prepared folder."""
    from stages import generate_demo, prepare

    params = copy.deepcopy(DEMO_TEST_PARAMS)
    params["demo"].update(n_train=n_train, n_test=n_test)
    params["prepare"].update(root=str(tmp_path / "raw"), zero_shot=setting)
    params["prepare"]["hico"].update(hico)
    params["evaluate"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if not (tmp_path / "raw").exists():
        generate_demo.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")])
    out = tmp_path / f"prepared_{setting}"
    prepare.main(["--params", str(tmp_path / "params.yaml"), "--out", str(out)])
    return out


def _read(folder):
    return {n: storage.read_parquet(folder / f"{n}.parquet") for n in ("images", "pairs", "classes", "rejects")}


@pytest.fixture(scope="module")
def uv_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("zs")
    return work, _prepare(work, "none"), _prepare(work, "uv")


def test_prepare_applies_gen_vlkt_rule_to_the_training_split_only(uv_run):
    work, plain, uv = uv_run
    a, b = _read(plain), _read(uv)
    unseen = np.zeros(600, bool)
    unseen[hico_unseen("uv")] = True
    # Expected from the raw file, independently: a pair (same human and object box) with an unseen class
    # goes with all its classes; an image left without a pair goes.
    raw = json.loads((work / "raw" / "instances_train2015.json").read_text())
    kept_pairs, dropped_images = {}, set()
    for name, ann in zip(raw["filenames"], raw["annotation"]):
        groups = defaultdict(list)
        for h, bh, bo in zip(ann["hoi"], ann["boxes_h"], ann["boxes_o"]):
            groups[(tuple(bh), tuple(bo))].append(h)
        kept = sorted(h for hs in groups.values() if not unseen[hs].any() for h in hs)
        if ann["hoi"] and not kept:
            dropped_images.add(name)
        kept_pairs[name] = kept
    assert dropped_images and sum(map(len, kept_pairs.values())) < sum(len(a["hoi"]) for a in raw["annotation"])
    split = {n: s for n, s in zip(b["images"].column("file_name").to_pylist(), b["images"].column("split").to_pylist())}
    training = {n for n, s in split.items() if s != "test"}
    assert training == set(raw["filenames"]) - dropped_images
    names = dict(zip(b["images"].column("image_id").to_pylist(), b["images"].column("file_name").to_pylist()))
    got = defaultdict(list)
    for i, h in zip(b["pairs"].column("image_id").to_pylist(), b["pairs"].column("hoi").to_pylist()):
        got[names[i]].append(h)
    assert {n: sorted(got[n]) for n in training} == {n: kept_pairs[n] for n in training}
    # no training label of an unseen class is left; the seen ones and every test label are untouched
    lab_a, lab_b = label_matrix(a["images"], 600), label_matrix(b["images"], 600)
    rows_a = {n: r for r, n in enumerate(a["images"].column("file_name").to_pylist())}
    lab_a = lab_a[[rows_a[n] for n in b["images"].column("file_name").to_pylist()]]
    is_train = np.asarray(b["images"].column("split").to_pylist()) != "test"
    assert np.isnan(lab_b[np.ix_(is_train, unseen)]).all() and not np.isnan(lab_a[np.ix_(is_train, unseen)]).all()
    assert np.array_equal(np.nan_to_num(lab_b[:, ~unseen], nan=9), np.nan_to_num(lab_a[:, ~unseen], nan=9))
    assert np.array_equal(np.nan_to_num(lab_b[~is_train], nan=9), np.nan_to_num(lab_a[~is_train], nan=9))
    # test images and pairs all kept; every class keeps its row; the rare split stays the dataset's own
    test_a = a["images"].filter(pa.compute.equal(a["images"].column("split"), "test"))
    test_b = b["images"].filter(pa.compute.equal(b["images"].column("split"), "test"))
    assert test_a.column("file_name").to_pylist() == test_b.column("file_name").to_pylist()
    n_test_pairs = lambda t, im: int(pa.compute.is_in(t["pairs"].column("image_id"), value_set=im.column("image_id"))
                                     .to_numpy(zero_copy_only=False).sum())
    assert n_test_pairs(a, test_a) == n_test_pairs(b, test_b) > 0
    assert b["classes"].num_rows == 600
    assert b["classes"].column("rare").to_pylist() == a["classes"].column("rare").to_pylist()
    assert not b["classes"].column("n_train_pairs").to_numpy()[unseen].any()
    assert not b["classes"].column("n_train_images").to_numpy()[unseen].any()
    # the setting travels with the tables; every removal is a reject row with its reason
    for name in ("images", "classes"):
        zs = read_zero_shot(b[name])
        assert zs.setting == "uv" and list(zs.unseen) == np.flatnonzero(unseen).tolist() and "gen-vlkt" in zs.source
    assert read_zero_shot(a["classes"]) is None and ClassSpace.from_table(a["classes"]).zero_shot is None
    reasons = [r for r in b["rejects"].column("reason").to_pylist() if r.startswith("zero-shot uv")]
    assert sum("every human-object pair" in r for r in reasons) == len(dropped_images)
    assert any("carries unseen class(es)" in r for r in reasons)


def test_images_without_boxes_leave_training_when_positive_for_an_unseen_class(uv_run):
    work, _, _ = uv_run
    b = _read(_prepare(work, "uo", hicodet_train=""))
    import scipy.io

    mat = scipy.io.loadmat(work / "raw" / "anno.mat")
    unseen = np.zeros(600, bool)
    unseen[hico_unseen("uo")] = True
    shows = (mat["anno_train"][unseen] == 1).any(axis=0)
    train_names = [str(n[0][0]) for n in mat["list_train"]]
    kept = set(b["images"].column("file_name").to_pylist())
    assert shows.any() and kept >= {n for n, s in zip(train_names, shows) if not s}
    assert not kept & {n for n, s in zip(train_names, shows) if s}


def test_training_targets_exclude_the_unseen_classes(uv_run):
    _, _, uv = uv_run
    images = storage.absolute_uris(storage.read_parquet(uv / "images.parquet"))
    unseen = list(hico_unseen("uv"))
    _, labels, targets = split_samples(images, "train", 600, "negative", "negative")
    assert (targets[:, unseen] == 0).all() and np.isnan(labels[:, unseen]).all()
    seen = np.setdiff1d(np.arange(600), unseen)
    assert (targets[:, seen] != 0).all()       # unknown_as negative still codes every seen class
    plain = images.replace_schema_metadata({})
    assert (split_samples(plain, "train", 600, "negative", "negative")[2][:, unseen] == -1).all()


def test_a_tiny_training_run_leaves_the_unseen_rows_at_their_init(tmp_path):
    """DEMO ONLY model (tiny random ViT); the language rows are random vectors here."""
    from PIL import Image

    from pipeline.model import ModelConfig, build_model
    from pipeline.training.local import fit_local

    rng = np.random.default_rng(0)
    C, unseen = 6, [1, 4]
    uris = []
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(tmp_path / f"{i}.jpg")
        uris.append(str(tmp_path / f"{i}.jpg"))
    pos = [[int(c)] for c in rng.choice([0, 2, 3, 5], 10)]
    rows = {"image_id": range(10), "split": ["train"] * 8 + ["val"] * 2, "file_name": [f"{i}.jpg" for i in range(10)],
            "uri": uris, "width": [32] * 10, "height": [32] * 10, "positives": pos, "negatives": [[]] * 10,
            "ambiguous": [[]] * 10}
    meta = {b"defr": json.dumps({"zero_shot": {"setting": "uv", "unseen": unseen}}).encode()}
    images = schemas.conform(pa.table(rows), schemas.IMAGES, "images").replace_schema_metadata(meta)
    text = rng.normal(size=(C, 16)).astype(np.float32)
    config = ModelConfig(image_size=32, num_classes=C)
    init = build_model(config, text, seed=0).head
    recipe = {"loss": "lse_sign", "ambiguous_as": "negative", "unknown_as": "negative", "lr": 1e-2, "epochs": 1,
              "restart_epochs": 5, "micro_batch": 8, "global_batch": 8, "min_per_class": 0, "crop_scale": 0.5,
              "jitter": 0.0, "seed": 0, "loader_workers": 0}
    model, _ = fit_local(images, text, config, recipe)
    w, b, w0, b0 = model.head.weight.detach(), model.head.bias.detach(), init.weight.detach(), init.bias.detach()
    assert np.array_equal(w[unseen].numpy(), w0[unseen].numpy()) and np.array_equal(b[unseen], b0[unseen])
    seen = [0, 2, 3, 5]
    assert not np.allclose(w[seen].numpy(), w0[seen].numpy())   # training did move the seen rows
    # without the setting, unknown_as negative trains the same rows as negatives: they move
    control, _ = fit_local(images.replace_schema_metadata({}), text, config, recipe)
    assert not np.allclose(control.head.weight.detach()[unseen].numpy(), w0[unseen].numpy())


def test_evaluate_stage_reports_full_seen_unseen_with_chance(uv_run, tmp_path):
    from stage_support import summary
    from stages import evaluate
    from tests.integration.test_evaluate_stage import write_inputs

    work, _, uv = uv_run
    (tmp_path / "data").mkdir()
    write_inputs(uv, tmp_path / "data", noise=0.6)
    evaluate.main(["--params", str(work / "params.yaml"), "--prepared", str(uv),
                   "--image-scores", str(tmp_path / "data/image_scores.parquet"),
                   "--hoi-detections", str(tmp_path / "data/hoi_detections.parquet"),
                   "--metrics", str(tmp_path / "metrics"), "--plots", str(tmp_path / "plots"),
                   "--report", str(tmp_path / "reports/evaluation.md")])
    cls = json.loads((tmp_path / "metrics/classification.json").read_text())
    det = json.loads((tmp_path / "metrics/detection.json").read_text())
    unseen = np.zeros(600, bool)
    unseen[hico_unseen("uv")] = True
    # classification: the means of the per-class AP, recomputed here from the inputs
    images = storage.read_parquet(uv / "images.parquet")
    test = images.filter(pa.compute.equal(images.column("split"), "test")).sort_by("image_id")
    scores = storage.read_parquet(tmp_path / "data/image_scores.parquet").sort_by("image_id")
    ap = hico_classification_map(np.stack(scores.column("scores").to_numpy(zero_copy_only=False)),
                                 label_matrix(test, 600)).per_class
    z = cls["zero_shot"]
    for name, mask in (("full", np.ones(600, bool)), ("seen", ~unseen), ("unseen", unseen)):
        values = ap[mask & ~np.isnan(ap)]
        assert z[name] == round(values.mean() * 100, 4) and z["num_classes"][name] == values.size
    assert z["setting"] == "uv" and z["full"] == cls["map"]
    assert 0 < z["num_classes"]["unseen"] < z["num_classes"]["full"]
    assert 0 < z["positive_fraction_unseen"] <= z["chance_unseen"] < z["unseen"]
    d = det["zero_shot"]
    assert d["full"] == det["default"]["full"] and d["num_classes"]["unseen"] > 0
    assert 0 <= d["chance_unseen"] < d["unseen"] <= 100
    report = (tmp_path / "reports/evaluation.md").read_text()
    assert "### Zero-shot UV, classification" in report and "### Zero-shot UV, detection" in report
    lines = summary.lines(tmp_path / "metrics")
    assert (f"zero-shot  UV    classify Full {z['full']:5.1f}  Seen {z['seen']:5.1f}  Unseen {z['unseen']:5.1f} "
            f"({z['num_classes']['unseen']} classes; chance {z['chance_unseen']:.1f})") in lines
    assert sum(line.startswith("zero-shot  UV    HOI det. Full") for line in lines) == 1


def _official(boxes: np.ndarray) -> np.ndarray:
    """Pipeline boxes -> the official 1-based inclusive ones the reference loop takes."""
    return np.asarray(boxes, np.float64) + [1, 1, 0, 0]


def test_defr_evaluate_zero_shot_equals_the_official_loop_on_the_real_test_set(shared_hico, tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.results import read_test_set
    from tests.metrics_reference import official_loop_map
    from tests.result_writers import write_table

    anno = str(shared_hico / "instances_test2015.json")
    test = read_test_set(anno)
    g = test.pairs
    rng = np.random.default_rng(0)
    # Synthetic detections: 70% of the pairs found (jittered by whole pixels, some below IoU 0.5), a
    # duplicate of some, and false positives of random classes on random images; random scores.
    found = rng.random(len(g["hoi"])) < 0.7
    dup = found & (rng.random(len(g["hoi"])) < 0.1)
    idx = np.concatenate([np.flatnonzero(found), np.flatnonzero(dup)])
    n_fp = 8000
    src = rng.integers(0, len(g["hoi"]), n_fp)
    det = {"image_id": np.concatenate([g["image_id"][idx], rng.integers(0, test.num_images, n_fp)]),
           "hoi": np.concatenate([g["hoi"][idx], rng.integers(0, 600, n_fp)]),
           "human_box": np.concatenate([g["human_box"][idx] + rng.integers(-12, 13, (len(idx), 4)),
                                        g["human_box"][src]]),
           "object_box": np.concatenate([g["object_box"][idx] + rng.integers(-12, 13, (len(idx), 4)),
                                         g["object_box"][src]])}
    for key in ("human_box", "object_box"):
        det[key][:, 2:] = np.maximum(det[key][:, 2:], det[key][:, :2] + 1)
    det["score"] = rng.random(len(det["hoi"]))
    write_table(det, test.file_names, tmp_path / "dets.parquet")
    per_class = official_loop_map(det["image_id"], det["hoi"], np.hstack([_official(det["human_box"]),
                                                                          _official(det["object_box"])]),
                                  det["score"], g["image_id"], g["hoi"],
                                  np.hstack([_official(g["human_box"]), _official(g["object_box"])]), range(600))
    for setting in ("rf-uc", "uv"):
        out = tmp_path / setting
        assert main(["evaluate", str(tmp_path / "dets.parquet"), "--benchmark", "hicodet", "--anno", anno,
                     "--zero-shot", setting, "--compare", "gen-vlkt-s", "--out", str(out)]) == 0
        z = json.loads((out / "metrics.json").read_text())["zero_shot"]
        unseen = np.isin(np.arange(600), hico_unseen(setting))
        expected = {"full": per_class.mean(), "seen": per_class[~unseen].mean(), "unseen": per_class[unseen].mean()}
        for key, value in expected.items():
            assert abs(z[key] - 100 * value) < 1e-6, (setting, key, z[key], 100 * value)
        assert z["num_classes"] == {"full": 600, "seen": 600 - SIZES[setting], "unseen": SIZES[setting]}
        assert 0 < z["unseen"] < 100 and z["seen"] != z["unseen"]
        assert f"zero-shot {setting.upper():5s} mAP Full {z['full']:.2f}" in capsys.readouterr().out
        report = (out / "report.md").read_text()
        assert f"## Zero-shot {setting.upper()}" in report and "| GEN-VLKT-S, ResNet-50 |" in report
        rows = (out / "per_class_ap.csv").read_text().splitlines()
        assert rows[0].endswith(",unseen") and sum(r.endswith(",True") for r in rows[1:]) == SIZES[setting]


def test_defr_evaluate_zero_shot_is_the_same_in_every_format_and_refused_off_hicodet(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.cli.evaluate_results import evaluate_hicodet
    from pipeline.results import read_test_set
    from tests.unit.test_results_formats import every_format, small_anno, small_detections

    anno = small_anno(tmp_path)
    test = read_test_set(anno)
    blocks = {name: evaluate_hicodet(path, anno, "", "auto", options, zero_shot="uv")["metrics"]["zero_shot"]
              for name, (path, options) in every_format(small_detections(test), test, tmp_path).items()}
    first = next(iter(blocks.values()))
    assert first["num_classes"] == {"full": 2, "seen": 1, "unseen": 1}     # ride bicycle unseen, hold apple seen
    assert all(b == first for b in blocks.values()), blocks
    assert main(["evaluate", str(tmp_path / "dets.csv"), "--benchmark", "hico", "--anno", anno, "--zero-shot", "uv",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--zero-shot uv: the zero-shot settings are HICO-DET's" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "dets.csv"), "--benchmark", "hicodet", "--anno", anno, "--compare",
                 "hoiclip", "--out", str(tmp_path / "out")]) == 2
    assert "published for HICO-DET's zero-shot settings only; add --zero-shot" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
