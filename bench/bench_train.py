"""Training throughput: python -m bench train   (demo ablation table: python -m bench.bench_train ablation)

Figures, each a ratio against a baseline measured in the same run:
1. data loading alone (decode + augment, images/s) vs the tiny model's consumption (fwd+bwd on ready tensors);
2. fwd+bwd+step images/s for defr-tiny-vit at the demo size and ViT-B-32 at 224 (random init, CPU);
3. Ray Train (2 workers, DDP over gloo) epoch wall time vs the plain single-process loop on the same data.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from pipeline import storage


def _demo(work: Path, n_train: int) -> Path:
    from stages import generate_demo, prepare

    params = {"demo": {"seed": 0, "n_train": n_train, "n_test": 40, "image_size": [160, 128]},
              "prepare": {"root": str(work / "raw"), "val_fraction": 0.1, "seed": 0, "check_images": True},
              "placement": {"prepare": {"workers": 2}}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    generate_demo.main(["--params", str(work / "params.yaml"), "--out", str(work / "raw")])
    prepare.main(["--params", str(work / "params.yaml"), "--out", str(work / "prepared")])
    return work / "prepared"


def _text(prepared: Path, work: Path) -> Path:
    """The demo pipeline's own language embeddings (MiniLM prompts, params.yaml embed_text)."""
    from stages import embed_text

    section = yaml.safe_load(Path("params.yaml").read_text())["embed_text"]
    (work / "embed.yaml").write_text(yaml.safe_dump({"embed_text": section, "placement": {"embed_text": {"cache": ""}}}))
    out = work / "text_embeddings.parquet"
    embed_text.main(["--params", str(work / "embed.yaml"), "--classes", str(prepared / "classes.parquet"),
                     "--out", str(out), "--plots", str(work / "plots")])
    return out


def _rate(fn, n_images: int, repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * n_images / (time.perf_counter() - start)


def _model_rate(name: str, size: int, batch: int = 16) -> float:
    from pipeline.model import ModelConfig, build_model

    model = build_model(ModelConfig(model_name=name, image_size=size, init="random", text_dim=384), None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    x, y = torch.randn(batch, 3, size, size), torch.where(torch.rand(batch, 600) < 0.01, 1.0, -1.0)
    from pipeline.training.losses import lse_sign_loss

    def step():
        opt.zero_grad()
        lse_sign_loss(model(x), y).backward()
        opt.step()
    return _rate(step, batch, repeats=2 if size >= 224 and "tiny" not in name else 5)


def _loading_rate(prepared: Path, size: int, workers: int) -> float:
    from pipeline.model import ModelConfig
    from pipeline.training.augment import train_transform
    from pipeline.training.dataset import ImageDataset, split_samples

    uris, _, targets = split_samples(storage.read_parquet(prepared / "images.parquet"), "train", 600,
                                     "negative", "negative")
    ds = ImageDataset(uris[:256], targets[:256], train_transform(ModelConfig(image_size=size)))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=workers)
    return _rate(lambda: [None for _ in loader], len(ds), repeats=1)


def main() -> None:
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    size = int(yaml.safe_load(Path("params.yaml").read_text())["train"]["image_size"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _demo(work, 300)
        load0, load2 = _loading_rate(prepared, size, 0), _loading_rate(prepared, size, 2)
        tiny = _model_rate("defr-tiny-vit", size)
        print(f"data loading (decode+augment, {size}px): {load0:.0f} img/s in-process, {load2:.0f} img/s with 2 "
              f"loader workers; tiny model consumes {tiny:.0f} img/s -> loading/model = {load0 / tiny:.2f} "
              f"(in-process), {load2 / tiny:.2f} (2 workers)")
        b32 = _model_rate("ViT-B-32", 224)
        print(f"train step (fwd+bwd+AdamW, CPU, {torch.get_num_threads()} threads): defr-tiny-vit@{size} "
              f"{tiny:.1f} img/s; ViT-B-32@224 {b32:.1f} img/s -> tiny/B-32 = {tiny / b32:.0f}x")
        _ray_overhead(prepared, work, size)


def _ray_overhead(prepared: Path, work: Path, size: int) -> None:
    from pipeline.model import ModelConfig
    from pipeline.training.local import fit_local
    from pipeline.training.runs import read_text_embeddings
    from stages import train

    text = work / "emb.parquet"
    from tests.integration.test_train_stage import write_text_embeddings  # structured stand-in, no MiniLM load
    write_text_embeddings(prepared, text)
    emb, _ = read_text_embeddings(str(text), 600)
    project = yaml.safe_load(Path("params.yaml").read_text())
    p = project["train"] | {"epochs": 2, "min_per_class": 1}
    place = project["placement"]["train"] | {"storage_path": str(work / "runs")}
    recipe = {k: p[k] for k in train.RECIPE_KEYS} | {k: place[k] for k in ("loader_workers", "micro_batch")}
    images = storage.read_parquet(prepared / "images.parquet")
    start = time.perf_counter()
    _, hist = fit_local(images, emb, ModelConfig(image_size=size), recipe)
    plain = time.perf_counter() - start
    (work / "p.yaml").write_text(yaml.safe_dump({"train": p, "placement": {"train": place}}))
    start = time.perf_counter()
    m = train.main(["--params", str(work / "p.yaml"), "--images", str(prepared / "images.parquet"),
                    "--text-embeddings", str(text), "--model-out", str(work / "model"),
                    "--history", str(work / "h.csv"), "--metrics", str(work / "m.json")])
    ray_s = time.perf_counter() - start
    print(f"2 epochs on {images.num_rows} images: plain loop {plain:.1f} s ({hist[-1]['images_per_s_per_worker']:.0f}"
          f" img/s); Ray Train 2 workers {ray_s:.1f} s incl. Ray start + worker start-up "
          f"({m['images_per_s_per_worker']:.0f} img/s per worker in-epoch) -> ray/plain wall = {ray_s / plain:.2f}; "
          f"in-epoch throughput, 2 DDP workers / plain = "
          f"{2 * m['images_per_s_per_worker'] / hist[-1]['images_per_s_per_worker']:.2f}")


def ablation(epochs: int = 8, n_train: int = 1800) -> None:
    """The demo ablation (language vs random init, LSE-Sign vs BCE), single process, same data and seed."""
    from pipeline.model import ModelConfig
    from pipeline.training.local import fit_local
    from pipeline.training.runs import read_text_embeddings
    from stages import train

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    project = yaml.safe_load(Path("params.yaml").read_text())
    p = project["train"] | {"epochs": epochs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = _demo(work, n_train)
        emb, meta = read_text_embeddings(str(_text(prepared, work)), 600)
        images = storage.read_parquet(prepared / "images.parquet")
        print(f"| init | loss | val mAP by epoch ({epochs} epochs, {p['image_size']}px) | best | shuffled-label |")
        print("|---|---|---|---|---|")
        for init, loss in (("text", "lse_sign"), ("random", "lse_sign"), ("text", "bce"), ("random", "bce")):
            recipe = {k: p[k] for k in train.RECIPE_KEYS} | {"loss": loss, "loader_workers": 0,
                                                             "micro_batch": project["placement"]["train"]["micro_batch"]}
            cfg = ModelConfig(model_name=p["model"], image_size=p["image_size"], gamma=p["gamma"], init=init,
                              text_dim=emb.shape[1])
            _, h = fit_local(images, emb if init == "text" else None, cfg, recipe)
            maps = [100 * r["val_map"] for r in h]
            print(f"| {init} | {loss} | {' '.join(f'{m:.1f}' for m in maps)} | {max(maps):.1f} | "
                  f"{100 * h[-1]['val_map_shuffled']:.1f} |", flush=True)


if __name__ == "__main__":
    ablation() if sys.argv[1:] == ["ablation"] else main()
