"""DEMO ONLY: the synthetic HICO-format dataset at any size, generated in parallel: the data of ``bench scale``
(bench code, not part of the library).

Same scenes, labels and file formats as :func:`pipeline.demo.scenes.generate`, but the images are drawn in
chunks by a process pool, each chunk from its own seeded generator, so HICO's size (38,116 train + 9,658
test images at about 640x480) takes minutes instead of an hour on one core. The images differ from
``generate``'s for the same seed (that one draws every image from one stream, which keeps the demo's
bytes and its DVC hashes fixed); the distribution is the same.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary
from pipeline.demo import scenes

CHUNK = 250  # images per task: small enough for an even spread, large enough to amortize the task


def _chunk(task: tuple) -> tuple[list, list, list, list]:
    """Draws and saves images ``start .. start + n - 1`` of one split; returns names, sizes, label columns
    and pair annotations in image order."""
    folder, split, start, n, seed, chunk_id, image_size, zipf = task
    vocab = hico_vocabulary()
    scene_hois = scenes.scene_classes(vocab)
    order = np.random.default_rng(seed).permutation(len(scenes.SCENES))  # the same frequent scenes as generate
    scene_p = 1.0 / (1 + np.argsort(order)) ** zipf
    scene_p /= scene_p.sum()
    rng = np.random.default_rng([seed, chunk_id])
    names, sizes, labels, annotation = [], [], [], []
    for i in range(start, start + n):
        im, person, objects = scenes._one_image(rng, scene_p, image_size)
        name = f"HICO_{split}2015_{i + 1:08d}.jpg"
        im.save(Path(folder) / name, quality=90)
        names.append(name)
        sizes.append([im.width, im.height])
        labels.append(scenes._label_column(vocab, scene_hois, objects, rng))
        annotation.append(scenes.image_pairs(vocab, scene_hois, person, objects))
    return names, sizes, labels, annotation


def generate_large(out_dir: str | Path, n_train: int, n_test: int, seed: int = 0,
                   image_size: tuple[int, int] = (640, 480), zipf: float = 2.0, workers: int | None = None
                   ) -> dict:
    """Writes the dataset to ``out_dir`` (anno.mat, instances_{train,test}2015.json, JPEGs) and returns
    the counts per split, as :func:`pipeline.demo.scenes.generate` does."""
    vocab: Vocabulary = hico_vocabulary()
    out = Path(out_dir)
    workers = workers or os.cpu_count() or 1
    mat, summary, chunk_id = {}, {}, 0
    for split, n in (("train", n_train), ("test", n_test)):
        folder = out / "images" / f"{split}2015"
        folder.mkdir(parents=True, exist_ok=True)
        tasks = []
        for start in range(0, n, CHUNK):
            tasks.append((str(folder), split, start, min(CHUNK, n - start), seed, chunk_id, tuple(image_size), zipf))
            chunk_id += 1
        names, sizes, labels, annotation = [], [], [], []
        with ProcessPoolExecutor(workers) as pool:
            for part in tqdm(pool.map(_chunk, tasks), total=len(tasks), desc=f"demo {split} images",
                             unit="chunk", disable=None):
                names += part[0]
                sizes += part[1]
                labels += part[2]
                annotation += part[3]
        mat[f"anno_{split}"] = np.stack(labels, axis=1)
        mat[f"list_{split}"] = np.array([[x] for x in names], dtype=object)
        counts = np.bincount([h for a in annotation for h in a["hoi"]], minlength=len(vocab))
        if split == "train":
            rare = [int(h) for h in np.flatnonzero(counts < 10)]
        scenes._write_instances(out / f"instances_{split}2015.json", vocab, names, sizes, annotation, rare)
        summary[split] = {"images": n, "pairs": int(counts.sum()), "classes_present": int((counts > 0).sum())}
    mat["list_action"] = scenes._list_action(vocab)
    scenes.savemat_reproducible(out / "anno.mat", mat)
    (out / "DEMO_ONLY.txt").write_text("Synthetic data written by bench/large_demo.py (bench scale); not HICO.\n")
    return summary
