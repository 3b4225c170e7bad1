"""The predict stage for real: Ray Data batch inference over the demo test split."""
import numpy as np
import pytest
import torch
import yaml

from pipeline import schemas, storage
from pipeline.model import ModelConfig, build_model, inference_transform, save_checkpoint
from pipeline.training.dataset import load_image, split_rows
from stages import predict

pytestmark = pytest.mark.integration


@pytest.mark.smoke  # make test-fast: predict (starts the Ray the next smoke tests reuse)
@pytest.mark.timeout(600)
def test_scores_every_test_image_like_the_model_itself(prepared_demo, tmp_path):
    text = np.random.default_rng(0).normal(size=(600, 32)).astype(np.float32)
    model = build_model(ModelConfig(image_size=48, metadata={"demo_only": True}), text).eval()
    save_checkpoint(model, tmp_path / "model")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"predict": {"split": "test"}, "placement": {
        "predict": {"batch_size": 16, "actors": 1, "cpus_per_actor": 1, "device": "cpu"}}}))
    out = tmp_path / "image_scores.parquet"
    predict.main(["--params", str(tmp_path / "params.yaml"), "--images", str(prepared_demo / "images.parquet"),
                  "--model", str(tmp_path / "model"), "--out", str(out)])

    table = storage.read_parquet(out)
    assert table.schema.remove_metadata() == schemas.IMAGE_SCORES
    assert storage.parquet_metadata(out)["demo_only"] == "true"
    test = split_rows(storage.read_parquet(prepared_demo / "images.parquet"), "test")
    assert table.column("image_id").to_pylist() == sorted(test.column("image_id").to_pylist())
    scores = np.asarray(table.column("scores").to_pylist(), np.float32)
    assert scores.shape == (test.num_rows, 600)
    uri = dict(zip(test.column("image_id").to_pylist(), test.column("uri").to_pylist()))
    tf = inference_transform(model.config)
    ids = table.column("image_id").to_pylist()[:4]
    with torch.no_grad():
        direct = model(torch.stack([tf(load_image(uri[i])) for i in ids])).numpy()
    np.testing.assert_allclose(scores[:4], direct, atol=1e-3)


def test_a_bad_checkpoint_fails_before_any_output(prepared_demo, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"predict": {"split": "test"}}))
    with pytest.raises(FileNotFoundError, match="config.json"):
        predict.main(["--params", str(tmp_path / "params.yaml"), "--images", str(prepared_demo / "images.parquet"),
                      "--model", str(tmp_path / "model"), "--out", str(tmp_path / "s.parquet")])
    assert not (tmp_path / "s.parquet").exists()
