"""DEMO ONLY: writes a synthetic dataset in the real file formats of HICO, MPII, V-COCO or the ``table`` adapter.

    python -m stages.generate_demo --out data/demo/raw        # or: dvc repro generate_demo

Reads params.yaml ``demo``: ``dataset`` picks the format (hico: pipeline/demo/scenes.py; mpii, table:
pipeline/demo/activities.py; vcoco: pipeline/demo/vcoco.py); set ``prepare.dataset`` to the same value. For
mpii, ``n_test`` images form the benchmark's val list (the split evaluated); for vcoco, ``n_train`` images
make V-COCO's train and val splits, and ``oracle_boxes.json`` holds the test images' perturbed boxes for
``detect.backend: precomputed`` (docs/datasets.md). The output is written to a temporary folder
and renamed into place.
"""
from __future__ import annotations

import json
import logging

from pipeline import storage
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.generate_demo")

def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/demo/raw")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("demo", args.params)
    size = tuple(cfg["image_size"])
    with storage.atomic_path(args.out) as tmp:
        if cfg["dataset"] == "hico":
            from pipeline.demo.scenes import generate
            from pipeline.classes.hico_vocab import hico_vocabulary

            summary = generate(tmp, hico_vocabulary(), n_train=cfg["n_train"], n_test=cfg["n_test"],
                               seed=cfg["seed"], image_size=size, zipf=float(cfg["zipf"]))
        elif cfg["dataset"] == "mpii":
            from pipeline.demo.activities import generate_mpii

            summary = generate_mpii(tmp, n_train=cfg["n_train"], n_val=cfg["n_test"], n_test=max(1, cfg["n_test"] // 8),
                                    seed=cfg["seed"], image_size=size, zipf=float(cfg["zipf"]))
        elif cfg["dataset"] == "vcoco":
            from pipeline.demo.vcoco import generate_vcoco

            summary = generate_vcoco(tmp, n_train=cfg["n_train"], n_test=cfg["n_test"], seed=cfg["seed"],
                                     image_size=size, zipf=float(cfg["zipf"]))
        else:
            from pipeline.demo.activities import generate_table

            summary = generate_table(tmp, n_train=cfg["n_train"], n_test=cfg["n_test"], seed=cfg["seed"],
                                     image_size=size)
    print(json.dumps({k: v for k, v in summary.items() if k != "scenes"}))
    log.info("wrote %s: synthetic %s-format data (DEMO ONLY), %d train / %d test images", args.out,
             cfg["dataset"], cfg["n_train"], cfg["n_test"])
    return summary


if __name__ == "__main__":
    console.run(main, "generate_demo")
