"""Raw HICO / HICO-DET (or the synthetic demo) -> Parquet tables.

    python -m stages.prepare --out data/prepared              # or: dvc repro prepare

Reads params.yaml ``prepare`` (root may be a local path or an fsspec URI: s3://, gs://, memory://).
Writes ``images.parquet``, ``pairs.parquet``, ``classes.parquet`` and ``rejects.parquet`` (every image or
pair left out, with the reason) into one folder, renamed into place only when all four are written.
"""
from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.data.prepare import Sources, prepare_dataset
from pipeline.vocab import hico_vocabulary
from stages import console
from stages import params as P

log = logging.getLogger("stages.prepare")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/prepared")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("prepare", args.params)
    where = P.placement("prepare", args.params)
    src = Sources(root=str(cfg["root"]), hico_anno=cfg["hico_anno"], hicodet_train=cfg["hicodet_train"],
                  hicodet_test=cfg["hicodet_test"], train_images=cfg["train_images"],
                  test_images=cfg["test_images"])
    out = prepare_dataset(src, hico_vocabulary(), val_fraction=cfg["val_fraction"], seed=cfg["seed"],
                          decode_images=cfg["check_images"], workers=where["workers"])
    meta = {"source_root": src.root, "demo_only": "data/demo" in src.root}
    with storage.atomic_path(args.out) as tmp:
        tmp.mkdir()
        for name in ("images", "pairs", "classes", "rejects"):
            table = getattr(out, name).replace_schema_metadata(
                {**(getattr(out, name).schema.metadata or {}), b"defr": json.dumps(meta).encode()})
            pq.write_table(table, tmp / f"{name}.parquet")
    splits = out.images.column("split").value_counts().to_pylist()
    summary = {"images": {d["values"]: d["counts"] for d in splits}, "pairs": out.pairs.num_rows,
               "rejects": out.rejects.num_rows}
    if out.rejects.num_rows:
        log.warning("%d rejected rows, see %s/rejects.parquet; first: %s", out.rejects.num_rows, args.out,
                    out.rejects.slice(0, 1).to_pylist()[0])
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    console.run(main, "prepare")
