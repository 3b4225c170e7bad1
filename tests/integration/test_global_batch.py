"""The batch that trains is ``train.global_batch`` however it is split: 1 worker x 4 accumulated
micro-batches, 2 workers x 2 and 4 workers x 1 give one optimizer step the same gradient.

Four gloo workers (torch.distributed, as Ray Train's TorchTrainer sets it up on CPU), each split training
one step on a process group of its size through the recipe's own ``setup`` (DDP over that group) and
``train_epoch`` (sampling, seeded augmentation, accumulation, DDP's no_sync, the loss's division), with SGD
at learning rate 1, so the weights move by exactly the gradient (AdamW's first step would hide its scale).
The workers are forked from a fresh interpreter that imported the recipe once: Ray Train's workers would
each import torch and open_clip again (a minute on this 2-core machine); Ray Train's own run of the recipe
with accumulation is the train stage's test (tests/integration/test_train_stage.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPLITS = (1, 2, 4)  # workers; global batch 4 in micro-batches of 1: 1 x 4, 2 x 2, 4 x 1


def one_step_per_split(rank: int, folder: Path) -> None:
    """One of 4 workers: per split, the workers of a group of that size train the one step of a 4-image
    epoch; rank 0 writes the weight change (the gradient) to ``folder/<workers>.json``."""
    import torch
    import torch.distributed as dist

    from pipeline import storage
    from pipeline.training.recipe import setup, train_epoch
    from tests.training_inputs import tiny_config

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=max(SPLITS))
    images = storage.read_parquet(folder / "images.parquet")
    for workers in SPLITS:
        group = dist.new_group(list(range(workers)))  # every rank takes part in making each group
        if rank >= workers:
            continue
        conf = tiny_config(global_batch=4, micro_batch=1, precision="fp32")
        ddp = (lambda m: torch.nn.parallel.DistributedDataParallel(m, process_group=group)) if workers > 1 else None
        w = setup(conf, images, rank, workers, torch.device("cpu"), *([ddp] if ddp else []))
        assert w.steps == 1 and (w.split.workers, w.split.micro_batch, w.split.accumulation) == (workers, 1, 4 // workers)
        w.optimizer = torch.optim.SGD(w.model.parameters(), lr=1.0)
        w.scheduler = torch.optim.lr_scheduler.LambdaLR(w.optimizer, lambda _: 1.0)
        before = [p.detach().clone() for p in w.model.parameters()]
        train_epoch(w, conf, 0, rank)
        if rank == 0:
            step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, w.model.parameters())])
            (folder / f"{workers}.json").write_text(json.dumps(step.tolist()))
    dist.destroy_process_group()


def main(folder: Path) -> None:
    """Writes 4 training images, then forks the 4 workers (no re-import: seconds, not a minute)."""
    import open_clip  # noqa: F401 (imported here once, not in each forked worker)
    import torch.multiprocessing
    import torchvision.transforms  # noqa: F401

    from pipeline import storage
    from tests.training_inputs import tiny_images

    (folder / "img").mkdir()
    storage.write_parquet(tiny_images(folder / "img", n_train=4, n_val=2), folder / "images.parquet")
    torch.multiprocessing.start_processes(one_step_per_split, args=(folder,), nprocs=max(SPLITS), start_method="fork")


@pytest.mark.timeout(600)
def test_one_step_has_the_same_gradient_on_1_2_and_4_workers(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tests.integration.test_global_batch", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = {n: np.asarray(json.loads((tmp_path / f"{n}.json").read_text())) for n in SPLITS}
    scale = np.abs(steps[1]).max()
    assert scale > 1e-3  # a real gradient, not a frozen model
    for n in (2, 4):
        np.testing.assert_allclose(steps[n], steps[1], rtol=0, atol=1e-5 * scale, err_msg=f"{n} workers")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
