"""Raw dataset (HICO / HICO-DET, MPII activities, or your own tables; or the synthetic demo) -> Parquet tables.

    python -m stages.prepare --out data/prepared              # or: dvc repro prepare

Reads params.yaml ``prepare``: ``dataset`` (hico | mpii | table) picks the adapter, ``prepare.<dataset>``
says where its files are under ``root`` (a local path or an fsspec URI: s3://, gs://, memory://);
docs/datasets.md describes the formats. ``checks.max_reject_fraction``: a split that loses more of its
images or pairs fails the stage before anything is written.
``zero_shot`` (none | rf-uc | nf-uc | uo | uv, HICO classes only): the unseen classes of that HICO-DET
zero-shot setting leave the train and val splits (docs/evaluation.md).
Writes ``images.parquet``, ``pairs.parquet``, ``classes.parquet`` (the label space every later stage reads)
and ``rejects.parquet`` (every image or pair left out, with the reason) into one folder, renamed into place
only when all four are written; for vcoco also ``vcoco/`` (the test split's official ground truth).
"""
from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.datasets.adapters import prepare_dataset
from pipeline.storage.credentials import mask
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.prepare")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/prepared")
    args = ap.parse_args(argv)
    P.setup_logging()
    cfg = P.load("prepare", args.params)
    where = P.placement("prepare", args.params)
    dataset, root = cfg["dataset"], str(cfg["root"])
    out = prepare_dataset(dataset, root, cfg[dataset], val_fraction=cfg["val_fraction"], seed=cfg["seed"],
                          decode_images=cfg["check_images"], workers=where["workers"],
                          max_reject_fraction=P.checks(args.params)["max_reject_fraction"],
                          zero_shot=cfg["zero_shot"])
    meta = {"source_root": mask(root), "demo_only": "data/demo" in root}
    if "zero_shot" in out.metadata:   # training reads it from images.parquet, evaluation from classes.parquet
        meta["zero_shot"] = out.metadata["zero_shot"]
    with storage.atomic_path(args.out) as tmp:
        tmp.mkdir()
        for name in ("images", "pairs", "classes", "rejects"):
            table = getattr(out, name)
            # The dataset's facts (adapter, label mode, split mapping) travel with the label space.
            extra = out.metadata if name == "classes" else {}
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), b"defr": json.dumps(meta | extra).encode()})
            pq.write_table(table, tmp / f"{name}.parquet")
        if dataset == "vcoco":   # the test split's ground truth in the official formats, for evaluate
            from pipeline.datasets.vcoco import GROUND_TRUTH, VcocoFiles, write_ground_truth

            write_ground_truth(VcocoFiles(root, **cfg["vcoco"]), tmp / GROUND_TRUTH)
    for line in out.summary:
        log.warning("%s (see %s/rejects.parquet)", line, args.out)
    splits = out.images.column("split").value_counts().to_pylist()
    summary = {"dataset": dataset, "classes": out.classes.num_rows,
               "images": {d["values"]: d["counts"] for d in splits}, "pairs": out.pairs.num_rows,
               "rejects": out.rejects.num_rows}
    print(json.dumps(summary))
    log.info("wrote %s: %s dataset, %d classes, images %s, %d pairs, %d rejected rows", args.out, dataset,
             out.classes.num_rows, summary["images"], out.pairs.num_rows, out.rejects.num_rows)
    return summary


if __name__ == "__main__":
    console.run(main, "prepare")
