"""``placement.train.compile``: the recipe's model under ``torch.compile`` (inductor, here on the CPU) trains to
the eager loss and weights within float tolerance, and its checkpoint is the plain model's."""
from __future__ import annotations

import pytest
import torch

from pipeline.model import load_checkpoint
from pipeline.training.recipe import new_state, setup, train_epoch, write_checkpoint
from tests.training_inputs import tiny_config, tiny_images

CPU = torch.device("cpu")


@pytest.mark.slow  # inductor compiles C++ kernels: 30-70 s on this 2-core machine
@pytest.mark.timeout(600)
def test_a_compiled_model_trains_to_the_eager_loss_and_saves_the_plain_model(tmp_path):
    images = tiny_images(tmp_path, n_train=8)  # 2 optimizer steps: the second's loss follows the first update
    losses = {}
    for compiled in (False, True):
        cfg = tiny_config(compile=compiled, global_batch=4, micro_batch=2)
        w = setup(cfg, images, 0, 1, CPU)
        assert isinstance(w.model, torch._dynamo.eval_frame.OptimizedModule) == compiled
        losses[compiled] = train_epoch(w, cfg, 0, 0)["train_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    write_checkpoint(tmp_path / "checkpoint", w, new_state())
    saved = load_checkpoint(tmp_path / "checkpoint" / "model").state_dict()  # no _orig_mod. in the names
    trained = w.model._orig_mod.state_dict()
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
