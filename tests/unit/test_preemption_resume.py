"""An epoch cut by a preemption notice and resumed from its checkpoint trains exactly as the uncut epoch.

The recipe saves weights, optimizer, scheduler and the loss so far at an optimizer step (the notice), and
the restarted worker trains the same seeded index list from that batch on (``start_step``). Run here in
one process with the per-image (PIL) path, whose random draws come from torch's global generator: with
that generator put back as well, the resumed epoch must end with the same weights and the same mean loss
as the epoch that was never cut. The Ray side (the notice, the restart) is tested on a real three-node
cluster in tests/integration/test_two_node_cluster.py.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from PIL import Image

from pipeline.model import ModelConfig, build_model
from pipeline.training.losses import make_loss
from pipeline.training.recipe import _loader, _train_epoch, train_data

CPU = torch.device("cpu")
BATCH, ACCUM, CUT = 2, 2, 4  # the cut after 4 batches = 2 optimizer steps


class WithGenerator:
    """The loader, with torch's generator set to ``state`` once its iterator exists (a DataLoader draws its
    base seed from that generator when it starts: the uncut epoch had drawn it before the cut)."""

    def __init__(self, loader, state):
        self.loader, self.state = loader, state

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        torch.set_rng_state(self.state)
        yield from batches


def _images(tmp_path, n=12):
    rng = np.random.default_rng(0)
    uris = []
    for i in range(n):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
        uris.append(str(path))
    return uris, np.where(rng.random((n, 5)) < 0.3, 1, -1).astype(np.int8)


def test_an_epoch_resumed_at_the_notice_ends_as_the_uncut_epoch(tmp_path):
    uris, targets = _images(tmp_path)
    cfg = {"augment": "pil", "crop_scale": 0.5, "jitter": 0.4, "seed": 0, "batch_size": BATCH, "loader_workers": 0}
    loss_fn = make_loss("lse_sign", torch.from_numpy(targets.astype(np.float32)))
    order = np.random.default_rng(1).permutation(len(uris))  # the epoch's seeded order

    def setup():
        torch.manual_seed(0)
        model = build_model(ModelConfig(image_size=32, num_classes=5, init="random", text_dim=8), None)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3)
        return model, opt, sched

    def epoch(model, opt, sched, indices, start_step=0, partial=(0.0, 0), on_step=None, rng=None):
        data, collate, augment = train_data(uris, targets, model.config, cfg, indices, 0, 0, CPU)
        loader = _loader(data, cfg, collate=collate)
        return _train_epoch(model, loader if rng is None else WithGenerator(loader, rng), loss_fn, opt, sched, ACCUM,
                            CPU, cfg, 0, 0, augment, start_step, partial, on_step)

    saved, calls = {}, []

    # what the checkpoint on a notice holds, and (for this test only: the recipe's checkpoint does not hold
    # it, docs/training.md) the generator's state, so that the rest of the epoch gets the uncut epoch's draws
    def on_step(epoch_index, done, loss_sum, count):
        assert epoch_index == 0
        calls.append(done)
        if done == CUT:
            saved.update(model=copy.deepcopy(model.state_dict()), opt=copy.deepcopy(opt.state_dict()),
                         sched=copy.deepcopy(sched.state_dict()), rng=torch.get_rng_state(),
                         partial=(float(loss_sum), count))

    model, opt, sched = setup()
    loss_uncut, _ = epoch(model, opt, sched, order, on_step=on_step)
    weights_uncut = {k: v.clone() for k, v in model.state_dict().items()}
    # after each optimizer step but the last (the epoch's own checkpoint follows that one)
    assert calls == [2, 4]
    assert saved["partial"][1] == CUT * BATCH and saved["partial"][0] > 0

    def restored():
        model, opt, sched = setup()
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        return model, opt, sched

    model, opt, sched = restored()
    loss_resumed, _ = epoch(model, opt, sched, order[CUT * BATCH:], CUT, saved["partial"], rng=saved["rng"])

    assert abs(loss_resumed - loss_uncut) < 1e-6 * abs(loss_uncut)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights_uncut[name], rtol=0, atol=0, msg=name)

    # resuming from the epoch's start instead (what an epoch-only checkpoint would do) is not the same run
    model, opt, sched = restored()
    loss_restarted, _ = epoch(model, opt, sched, order)
    assert loss_restarted != loss_uncut
