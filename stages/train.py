"""Fine-tune the DEFR classifier with Ray Train and export the best checkpoint by validation mAP.

Laptop (local Ray):
    python -m stages.train --images data/prepared/images.parquet --classes data/prepared/classes.parquet \
        --text-embeddings data/text_embeddings.parquet --model-out models/defr \
        --history plots/train/history.csv --metrics metrics/train.json
Cluster: the same command with ``placement.ray_address`` (or RAY_ADDRESS) set, ``placement.train.storage_path``
on shared storage (s3://, gs://, NFS) and ``placement.train.num_workers`` / ``use_gpu`` sized to the cluster.

Sweeps (Ray Tune over the trainer; one run per grid point, nothing exported):
    python -m stages.train ... --sweep sweep.yaml --sweep-out sweeps/gamma.csv
with sweep.yaml e.g. ``{gamma: [50, 100, 150], loss: [lse_sign, bce]}`` (keys: recipe keys or model fields).

Reads params.yaml ``train`` (the model and the recipe) and ``placement.train`` (workers, storage, retries).
The classifier has one row per class of the classes table, and the checkpoint's config.json lists the
classes (``ModelConfig.classes``), so a model names its outputs on its own.
The Ray Train run is named ``<run_name>-<hash of the training params, inputs and library code>``: re-running
after a crash resumes that run from its last checkpoint; changing a param, an input or pipeline/ starts a new run.

The batch that trains is ``train.global_batch``: ``placement.train.num_workers`` x micro-batches of at most
``placement.train.micro_batch`` images x accumulation steps; a combination that cannot reach it exactly is
refused before anything starts, naming the nearest valid choices.

Live metrics: each epoch's loss, learning rate, validation mAP (%), images/s and the fraction of step time
spent waiting for data go to DVCLive files in ``--live`` (default ``logs/live/train``; ``--live ''``: none)
as the run goes, which ``dvc exp show`` and ``dvc plots show`` read (stage_support/live_metrics.py). A relative ``placement.train.storage_path`` is
relative to the main workspace (``$DVC_ROOT``), also in ``dvc exp run --temp`` / ``--queue`` runs, which DVC
runs in a copy under ``.dvc/tmp/exps/`` that it deletes afterwards.
"""
from __future__ import annotations

import logging
import os
import posixpath

import yaml

from pipeline import storage
from pipeline.classes.space import ClassSpace
from pipeline.model import ModelConfig
from pipeline.placement import TrainPlacement
from pipeline.training.runs import history_csv, sweep_grid, train
from pipeline.training.sampling import split_batch
from stage_support import console
from stage_support import params as P
from stage_support.live_metrics import DEFAULT_DIR as LIVE_DIR
from stage_support.live_metrics import LiveMetrics

log = logging.getLogger("stages.train")

MODEL_KEYS = {"model": "model_name", "image_size": "image_size", "gamma": "gamma",
              "classifier_position": "classifier_position", "init": "init"}
RECIPE_KEYS = ("loss", "ambiguous_as", "unknown_as", "lr", "epochs", "restart_epochs", "global_batch",
               "min_per_class", "crop_scale", "jitter", "augment", "seed")


def check_model_name(name: str, key: str = "train.model") -> None:
    """Refuses a name open_clip does not know, with a did-you-mean (no torch import: milliseconds)."""
    import difflib

    from pipeline.assets.clip_configs import known_model_names

    names = known_model_names()
    if names and name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        raise P.ParamsError(f"params.yaml: {key} = {name!r}: not an open_clip model" +
                            (f"; did you mean {', '.join(close)}?" if close else "") +
                            f" ({len(names)} known: ViT-B-32, ViT-B-16, ViT-L-14, RN50, ..., defr-tiny-vit)")


def model_config(p: dict, classes: ClassSpace | None = None) -> ModelConfig:
    """The architecture from the validated ``train`` params (``pretrained_file`` replaces the tag), with one
    classifier row per class of ``classes``."""
    check_model_name(p["model"])
    weights = P.named_file(p["pretrained_file"])
    if weights and p["pretrained"]:
        raise P.ParamsError(f"params.yaml: train.pretrained = {p['pretrained']!r} and train.pretrained_file = "
                            f"{weights!r}: give one of them")
    config = ModelConfig(**{field: p[key] for key, field in MODEL_KEYS.items()},
                         pretrained=weights or p["pretrained"])
    config.metadata = {"demo_only": p["demo_only"], "trained_by": "stages.train"}
    if classes is not None:
        config.num_classes, config.classes = len(classes), classes.to_list()
    return config


def checkpoint_root(storage_path: str, env: dict[str, str] | None = None) -> str:
    """``placement.train.storage_path`` as Ray Train gets it: a relative local path is taken relative to the
    main workspace, ``$DVC_ROOT``, which DVC sets for every stage command; in ``dvc exp run --temp`` and
    queued runs it names the main workspace while the command runs in a temporary copy under
    ``.dvc/tmp/exps/`` (whose checkpoints would go with it). Outside DVC: relative to the working directory.
    URIs and absolute paths are returned unchanged."""
    env = os.environ if env is None else env
    root = env.get("DVC_ROOT")
    if not root or not storage.is_local(storage_path) or os.path.isabs(storage_path):
        return storage_path
    return os.path.join(root, storage_path)


def _on_report(live: LiveMetrics | None):
    """What the stage does with each epoch's report while the run goes: the live metrics, and one console
    warning the first time an epoch waited on its loader (naming the knob)."""
    warned = []

    def on_report(report: dict) -> None:
        if live:
            live.epoch(report)
        wait = report.get("data_wait_warning")
        if wait and not warned:
            warned.append(report["epoch"])
            log.warning("epoch %d: %s", report["epoch"], wait)
    return on_report


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--classes", help="classes.parquet of prepare (default: the one beside --images)")
    ap.add_argument("--text-embeddings", required=True)
    ap.add_argument("--model-out", required=True)
    ap.add_argument("--history", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--sweep", help="YAML {key: [values]}: run a Ray Tune grid instead of one training run")
    ap.add_argument("--sweep-out", default="sweep.csv", help="CSV of the sweep's trials (with --sweep)")
    ap.add_argument("--live", default=LIVE_DIR,
                    help=f"DVCLive folder of the per-epoch live metrics (default {LIVE_DIR}; '' = none)")
    args = ap.parse_args(argv)
    P.setup_logging()
    p, where = P.load("train", args.params), P.placement("train", args.params)
    where = {**where, "storage_path": checkpoint_root(where["storage_path"])}
    try:  # the batch that trains is train.global_batch, exactly, or nothing starts
        split = split_batch(p["global_batch"], where["num_workers"], where["micro_batch"])
    except ValueError as e:
        raise P.ParamsError(f"{args.params}: {e}") from None
    if 2 * split.micro_batch <= min(where["micro_batch"], split.per_worker):  # e.g. 37 per worker: 37 x 1 image
        log.warning("%d images per worker divide into micro-batches of %d at most (placement.train.micro_batch "
                    "allows %d): slow; a train.global_batch with more divisors trains faster", split.per_worker,
                    split.micro_batch, where["micro_batch"])
    classes_path = args.classes or storage.join(posixpath.dirname(args.images) or ".", "classes.parquet")
    classes = ClassSpace.from_table(storage.read_parquet(classes_path), classes_path)
    model, recipe = model_config(p, classes), {k: p[k] for k in RECIPE_KEYS}
    address = where["ray_address"] or None
    if args.sweep:
        with open(args.sweep) as f:
            space = yaml.safe_load(f)
        frame = sweep_grid(args.images, args.text_embeddings, model, recipe, TrainPlacement.from_dict(where), space, address,
                           where["connect_timeout_s"])
        storage.write_text(frame.to_csv(index=False), args.sweep_out)
        log.info("sweep of %d trials -> %s\n%s", len(frame), args.sweep_out, frame.to_string(index=False))
        return {"trials": len(frame), "best_val_map": float(frame["best_val_map"].max())}
    log.info("training %s (%d epochs, %s) on %s", model.model_name, p["epochs"], split.describe(), args.images)
    live = LiveMetrics(args.live) if args.live else None
    try:
        with console.progress_from_log(r"\[defr\] epoch (\d+)/\d+ .*", p["epochs"], "epochs",
                                       r"Ray Train run \S+ under"):
            metrics, history = train(args.images, args.text_embeddings, model, recipe,
                                     TrainPlacement.from_dict(where), args.model_out, address,
                                     where["connect_timeout_s"], on_report=_on_report(live))
    except BaseException:
        if live:
            live.close()
        raise
    if live:
        live.finish(history)
    storage.write_text(history_csv(history), args.history)
    storage.write_json(metrics, args.metrics)
    log.info("best val mAP %.2f %% at epoch %d%s -> wrote %s, %s", metrics["best_val_map"], metrics["best_epoch"],
             f" (resumed {metrics['resumes']}x from a checkpoint)" if metrics["resumes"] else "", args.model_out,
             args.metrics)
    # Returned, not written: throughput varies from run to run, the metrics file must not.
    return {**metrics, "images_per_s_per_worker": sum(h["images_per_s_per_worker"] for h in history) / len(history)}


if __name__ == "__main__":
    console.run(main, "train")
