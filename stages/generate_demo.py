"""DEMO ONLY: writes the synthetic HICO-format dataset (see pipeline/data/synthetic.py).

    python -m stages.generate_demo --out data/demo/raw        # or: dvc repro generate_demo

Reads params.yaml ``demo``. The output is written to a temporary folder and renamed into place.
"""
from __future__ import annotations

import json

from pipeline import storage
from pipeline.data.synthetic import generate
from pipeline.vocab import hico_vocabulary
from stages import console
from stages import params as P


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/demo/raw")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("demo", args.params)
    with storage.atomic_path(args.out) as tmp:
        summary = generate(tmp, hico_vocabulary(), n_train=cfg["n_train"], n_test=cfg["n_test"],
                           seed=cfg["seed"], image_size=tuple(cfg["image_size"]), zipf=float(cfg["zipf"]))
    print(json.dumps({k: v for k, v in summary.items() if k != "scenes"}))
    return summary


if __name__ == "__main__":
    console.run(main, "generate_demo")
