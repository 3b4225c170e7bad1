"""A run cut by a preemption notice and resumed from the recipe's own checkpoint ends with the uncut run's
weights, bit for bit.

In one process, with the recipe's own pieces: ``setup``, ``train_epoch`` with the ``on_step`` hook that the
preemption watch uses, ``write_checkpoint`` at the notice (the node then goes: the epoch stops there), a new
worker (``setup``) that ``read_checkpoint``s it and trains the rest of the epoch from the saved step, then
the next epoch. Nothing restores a generator: every draw is seeded by where it happens (a sample's by its
position in the epoch, the model's by the optimizer step). Both augmentation paths. The Ray side (the
notice, the restart) is tested on a real three-node cluster in tests/integration/test_two_node_cluster.py.
"""
from __future__ import annotations

import pytest
import torch

from pipeline.training.recipe import new_state, read_checkpoint, setup, train_epoch, write_checkpoint
from tests.training_inputs import tiny_config, tiny_images

CPU = torch.device("cpu")
CUT = 2  # 12 images in global batches of 2 x 2 micro-batches: 3 optimizer steps per epoch, the notice after 2


class NodeGone(Exception):
    """The preempted node leaves after the checkpoint on its notice."""


@pytest.mark.parametrize("augment", ["pil", "batch"])
def test_a_run_preempted_mid_epoch_resumes_from_its_checkpoint_and_ends_as_the_uncut_run(tmp_path, augment):
    images = tiny_images(tmp_path)
    cfg = tiny_config(augment=augment, global_batch=4, micro_batch=2)

    w = setup(cfg, images, 0, 1, CPU)
    assert w.steps == 3 and w.split.accumulation == 2
    uncut = [train_epoch(w, cfg, epoch, 0) for epoch in range(2)]
    weights = {k: v.clone() for k, v in w.model.state_dict().items()}

    w = setup(cfg, images, 0, 1, CPU)
    state, folder = new_state(), tmp_path / "checkpoint"

    def notice(epoch, steps_done, loss_sum, count):  # what the recipe's save_on_notice stores
        if steps_done == CUT:
            state.update(epoch=epoch, step=steps_done, partial_loss=[float(loss_sum), count])
            write_checkpoint(folder, w, state)
            raise NodeGone

    with pytest.raises(NodeGone):
        train_epoch(w, cfg, 0, 0, on_step=notice)
    # weights, optimizer and scheduler, the training state, the history: no generator, no copy of best weights
    assert sorted(p.name for p in folder.iterdir()) == ["history.json", "model", "train_state.pt"]

    def resumed(start_step):
        w = setup(cfg, images, 0, 1, CPU)  # the restarted worker
        saved = read_checkpoint(folder, w)
        assert (saved["epoch"], saved["step"], saved["partial_loss"][1]) == (0, CUT, CUT * 4)
        stats = [train_epoch(w, cfg, 0, 0, start_step, saved["partial_loss"] if start_step else (0.0, 0)),
                 train_epoch(w, cfg, 1, 0)]
        return stats, w.model.state_dict()

    stats, got = resumed(CUT)
    assert [s["train_loss"] for s in stats] == [s["train_loss"] for s in uncut]
    for name, value in got.items():
        assert torch.equal(value, weights[name]), name

    if augment == "pil":  # the same weights resumed at the epoch's start instead (an epoch-only checkpoint)
        _, other = resumed(0)  # are another run
        assert not all(torch.equal(value, weights[name]) for name, value in other.items())
