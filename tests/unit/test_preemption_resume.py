"""A run cut by a preemption notice and resumed from the recipe's own checkpoint ends with the uncut run's
weights, bit for bit.

In one process, with the recipe's own pieces: ``setup``, ``train_epoch`` with the ``on_step`` hook that the
preemption watch uses, ``write_checkpoint`` at the notice (the node then goes: the epoch stops there), a new
worker (``setup``) that ``read_checkpoint``s it and trains the rest of the epoch from the saved step, then
the next epoch. Nothing restores a generator: every draw is seeded by where it happens (a sample's by its
position in the epoch, the model's by the optimizer step). Both augmentation paths. The Ray side (the
notice, the restart) is tested on a real three-node cluster in tests/integration/test_two_node_cluster.py;
the last test here pins the one ordering that cluster test can only catch on a busy machine.
"""
from __future__ import annotations

import multiprocessing
import queue
import time
from types import SimpleNamespace

import pytest
import torch

from pipeline.training.recipe import PreemptionWatch, new_state, read_checkpoint, setup, train_epoch, write_checkpoint
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


def _watch_on_rank(rank: int, init_file: str, results) -> None:
    """One of two gloo workers running the recipe's PreemptionWatch for two optimizer steps. Rank 1 is the
    reclaimed one that reaches Ray Train's barrier after the controller relaxed it to rank 0: Ray releases
    rank 0 alone and keeps rank 1 waiting until its node goes (ray.train.v2 SynchronizationActor
    ``set_required_ranks``); here its question never returns."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    notice = SimpleNamespace(deadline_ms=None, preempted_node_ids=["node-2"], preempted_ranks=[1])

    def ask():
        if rank == 1:
            time.sleep(3600)
        return notice

    saved = []
    watch = PreemptionWatch(lambda epoch, step, loss: saved.append((epoch, step, loss)), rank, every=2, ask=ask)
    for step in (1, 2):
        watch(0, step, torch.tensor(float(rank + 1) * step), 4 * step)
    results.put((rank, saved))


def test_rank_0_checkpoints_on_a_notice_it_gets_alone_while_the_reclaimed_rank_still_waits(tmp_path):
    """The loss of all ranks is summed before the question, so rank 0 writes its checkpoint without
    waiting for a rank that Ray holds in the barrier (with the sum after the question both ranks wait
    on each other until the deadline, and the epoch restarts from its first batch)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=_watch_on_rank, args=(rank, str(tmp_path / "gloo"), results), daemon=True)
               for rank in (0, 1)]
    for w in workers:
        w.start()
    try:
        rank, saved = results.get(timeout=120)
    except queue.Empty:
        pytest.fail("rank 0 never saved its checkpoint: it waits on the rank held in Ray's barrier")
    finally:
        for w in workers:
            w.kill()
            w.join(10)
    # the notice after the 2nd step; the loss sum and count of both ranks (1x2 + 2x2, 8 + 8)
    assert (rank, saved) == (0, [(0, 2, [6.0, 16])])
