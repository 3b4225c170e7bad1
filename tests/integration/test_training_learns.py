"""The demo model learns: validation mAP rises well above a shuffled-label baseline (single process)."""
import pytest
import yaml

from pipeline import storage
from pipeline.model import ModelConfig
from pipeline.training.local import fit_local
from pipeline.training.runs import read_text_embeddings
from stages import generate_demo, prepare
from tests.conftest import DEMO_TEST_PARAMS
from tests.integration.test_train_stage import write_text_embeddings

pytestmark = pytest.mark.integration


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tiny_model_learns_the_demo(tmp_path):
    import copy

    params = copy.deepcopy(DEMO_TEST_PARAMS)
    params["demo"]["n_train"] = 900  # the 150-image fixture is too small to show generalisation
    params["prepare"]["root"] = str(tmp_path / "raw")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    generate_demo.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")])
    prepare.main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "prepared")])
    emb, _ = read_text_embeddings(str(write_text_embeddings(tmp_path / "prepared", tmp_path / "e.parquet",
                                                                  dim=384)), 600)
    recipe = {"loss": "lse_sign", "ambiguous_as": "negative", "unknown_as": "negative", "lr": 1e-3, "epochs": 4,
              "restart_epochs": 5, "micro_batch": 32, "global_batch": 32, "min_per_class": 10, "crop_scale": 0.5,
              "jitter": 0.4, "seed": 0, "loader_workers": 0}
    images = storage.read_parquet(tmp_path / "prepared" / "images.parquet")
    _, history = fit_local(images, emb, ModelConfig(image_size=96), recipe)
    maps = [h["val_map"] for h in history]
    assert maps[-1] > maps[0]
    assert maps[-1] > 1.5 * history[-1]["val_map_shuffled"], history
