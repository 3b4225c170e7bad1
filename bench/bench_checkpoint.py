"""Bytes the training run writes per epoch at the paper's size: python -m bench checkpoint [--model ViT-B-16]

Builds the model on the CPU at 672 px with 600 classes (random weights: nothing is downloaded), gives AdamW
its state (one step on zero gradients: the moments have the weights' shape, whatever their values), and
writes what rank 0 reports every epoch through the recipe's own ``write_checkpoint``. The baseline is the
same run at commit 145ba08, whose checkpoints also held a copy of the best weights (``best/``, the size of
``model/``) every epoch. Prints the bytes of each part and the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def measure(model_name: str = "ViT-B-16", image_size: int = 672, classes: int = 600, epochs: int = 10) -> dict:
    """Bytes of one epoch's checkpoint by part, now and with 145ba08's copy of the best weights."""
    from pipeline.model import ModelConfig, build_model
    from pipeline.training.recipe import new_state, write_checkpoint

    text = np.random.default_rng(0).standard_normal((classes, 512)).astype(np.float32)
    model = build_model(ModelConfig(model_name=model_name, image_size=image_size, num_classes=classes), text)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-5, weight_decay=0.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=5)
    state = new_state() | {"epoch": epochs, "history": [{"epoch": e, "train_loss": 1.0, "val_map": 0.5,
                                                         "lr": 1.5e-5} for e in range(epochs)]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_checkpoint(folder, SimpleNamespace(model=model, optimizer=optimizer, scheduler=scheduler), state)
        seconds = time.perf_counter() - start
        parts = {p.name: _size(p) for p in folder.iterdir()}
    now = sum(parts.values())
    return {"model": model_name, "image_size": image_size, "parameters": sum(p.numel() for p in model.parameters()),
            "parts_bytes": parts, "bytes_per_epoch": now, "bytes_per_epoch_145ba08": now + parts["model"],
            "write_s": round(seconds, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench checkpoint")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--image-size", type=int, default=672)
    args = ap.parse_args(argv or [])
    out = measure(args.model, args.image_size)
    gb = 1e9
    print(f"{out['model']} @ {out['image_size']} px, {out['parameters'] / 1e6:.1f} M parameters: per epoch rank 0 "
          f"writes {out['bytes_per_epoch'] / gb:.2f} GB (" +
          ", ".join(f"{k} {v / gb:.3f} GB" for k, v in sorted(out["parts_bytes"].items())) +
          f"; {out['write_s']:.1f} s to local disk here); 145ba08 wrote {out['bytes_per_epoch_145ba08'] / gb:.2f} GB "
          f"(a copy of the best weights every epoch) -> now / before = "
          f"{out['bytes_per_epoch'] / out['bytes_per_epoch_145ba08']:.2f}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
