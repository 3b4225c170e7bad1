"""The inference engine in-process: decoding, reject rows with the reason, order, batching, placement."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline.placement import Placement
from pipeline.inference.engine import PoolWorker, run_predictor, use_ray


class MeanColour:
    """A predictor without a model: the mean RGB of each image, and what its rows carried."""

    schema = pa.schema([("mean", pa.list_(pa.float32())), ("tag", pa.string()), ("prepared", pa.bool_())])
    calls: list[int] = []

    def __init__(self, scale: float = 1.0, device: str = "cpu"):
        self.scale, self.device = scale, device

    def prepare(self, image, row):
        return np.asarray(image, np.float32).reshape(-1, 3).mean(0) * self.scale

    def __call__(self, items, rows):
        MeanColour.calls.append(len(items))
        return pa.table({"mean": [i.tolist() for i in items], "tag": [r["tag"] for r in rows],
                         "prepared": [True] * len(items)}, schema=self.schema)


@pytest.fixture
def images(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 200, 200)]
    uris = []
    for i, c in enumerate(colours):
        uris.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 30), c).save(uris[-1])
    (tmp_path / "broken.png").write_bytes((tmp_path / "0.png").read_bytes()[:60])
    uris += [str(tmp_path / "broken.png"), str(tmp_path / "missing.png"), uris[0]]
    return pa.table({"image_id": [7, 3, 5, 1, 9, 2, 4, 8], "uri": uris,
                     "width": [40, 40, 40, 40, 40, 40, 40, 41], "height": [30] * 8,
                     "tag": list("abcdefgh")}), colours


def test_every_image_is_a_result_or_a_reject_with_its_reason(images):
    table, colours = images
    MeanColour.calls.clear()
    run = run_predictor(table, MeanColour, {"scale": 2.0}, Placement(batch_size=3, device="cpu"), ray=False)
    assert run.table["image_id"].to_pylist() == [1, 3, 5, 7, 9]             # sorted, readable ones only
    by_id = {r["image_id"]: r for r in run.table.to_pylist()}
    for image_id, colour, tag in zip([7, 3, 5, 1, 9], colours, "abcde"):
        assert by_id[image_id]["mean"] == pytest.approx([2.0 * c for c in colour])
        assert by_id[image_id]["tag"] == tag and by_id[image_id]["prepared"]
    reasons = {image_id: reason for _, image_id, reason in run.rejects}
    assert set(reasons) == {"2", "4", "8"}
    assert reasons["2"].startswith("cannot decode image")
    assert reasons["4"] == "missing image file"
    assert reasons["8"] == "image is 40x30 but the annotation says 41x30"
    assert MeanColour.calls == [3, 2]   # batches of 3; the last holds only rejects: the predictor is not called
    assert run.info["mode"] == "in-process" and run.info["device"] == "cpu"


def test_worker_keeps_row_order_and_fills_rejected_rows_with_nulls(images):
    table, _ = images
    worker = PoolWorker(MeanColour, {}, "cpu", 1)
    out = worker(table.slice(3, 4))  # ids 1, 9, 2 (broken), 4 (missing)
    assert out["image_id"].to_pylist() == [1, 9, 2, 4]
    assert out["tag"].to_pylist() == ["d", "e", None, None]
    assert out["problem"].to_pylist()[:2] == [None, None] and out["problem"][3].as_py() == "missing image file"


def test_keys_are_checked(images):
    table, _ = images
    with pytest.raises(ValueError, match="not unique"):
        run_predictor(table.set_column(0, "image_id", pa.array([1] * 8)), MeanColour, {}, Placement(), ray=False)
    with pytest.raises(ValueError, match="missing column 'uri'"):
        run_predictor(table.drop_columns(["uri"]), MeanColour, {}, Placement(), ray=False)
    empty = run_predictor(table.slice(0, 0), MeanColour, {}, Placement(), ray=False)
    assert empty.table.num_rows == 0 and empty.rejects == []
    assert empty.table.column_names == ["image_id", "mean", "tag", "prepared"]


def test_placement_and_when_ray_is_used(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert Placement.from_dict({"batch_size": 4, "actors": 2, "cpus_per_actor": 1, "device": "cpu",
                                "ray_address": "", "other": 1}) == Placement(4, 2, 1, "cpu", "")
    with pytest.raises(ValueError, match="device 'gpu'"):
        Placement(device="gpu")
    assert not use_ray(3, Placement()) and use_ray(33, Placement())
    assert use_ray(3, Placement(ray_address="ray://head:10001"))
    assert not use_ray(1000, Placement(), force=False) and use_ray(1, Placement(), force=True)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert use_ray(1, Placement())
