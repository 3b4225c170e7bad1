r"""``defr serve``: the command line (the ``defr`` command's ``serve``; :mod:`pipeline.cli.commands` adds it).

    defr serve --model models/defr                       # http://127.0.0.1:8000/, boxes sent with each photo
    defr serve --model models/defr --detector rtmdet_tiny_8xb32-300e_coco \
        --detector-checkpoint rtmdet_tiny.pth            # photos without boxes get the detector's
    DEFR_SERVE_TOKEN=$(cat token) defr serve --model s3://bucket/models/defr --host 0.0.0.0 \
        --ray-address head:6379                          # on a cluster: GPU replicas, scaled by load

Everything is checked before Ray starts (the model's config, the detector, the token, the bind address),
so a mistake costs a second and one line.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

DEMO_NOTE = ("DEMO ONLY model (its checkpoint says so: the tiny model of the synthetic demo, or random "
             "weights): its scores mean nothing on real images")
RANDOM_DETECTOR_NOTE = "random detector weights (TESTS / DEMO ONLY): its boxes mean nothing"


def add_parser(sub) -> argparse.ArgumentParser:
    """Adds ``serve`` to the ``defr`` subcommands."""
    from pipeline.inference.detector_predictor import add_detector_arguments
    from pipeline.placement import DEVICES

    p = sub.add_parser("serve", help="the model behind Ray Serve: an HTTP API and a web page (docs/serving.md)",
                       description="Serves a trained DEFR model with Ray Serve: GET / (a page to drop photos on), "
                                   "POST /v1/detect (multipart image [+ boxes]: the scored pairs), GET /healthz.")
    p.add_argument("--model", required=True, help="DEFR checkpoint folder (model.safetensors + config.json) or URI")
    net = p.add_argument_group("where it listens")
    net.add_argument("--host", default="127.0.0.1",
                     help="address of the HTTP proxy (default 127.0.0.1: this machine only; any other needs a token)")
    net.add_argument("--port", type=int, default=8000)
    net.add_argument("--token-file", help="file holding the bearer token that /v1/detect then requires "
                                          "(default: the DEFR_SERVE_TOKEN variable; required off loopback)")
    src = p.add_argument_group("boxes of photos sent without any (as in defr detect)")
    add_detector_arguments(src)
    s = p.add_argument_group("scores (defaults: defr detect's)")
    s.add_argument("--score-floor", type=float, default=0.05, help="boxes under it are ignored")
    s.add_argument("--score-threshold", type=float, default=0.2, help="humans and objects kept for pairs")
    s.add_argument("--top-k", type=int, default=100, help="(pair, class) results per photo")
    where = p.add_argument_group("where it runs")
    where.add_argument("--ray-address", default="", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    where.add_argument("--device", default="auto", choices=DEVICES, help="auto: one GPU per replica where there are GPUs")
    where.add_argument("--replicas", default="auto",
                       help="a number, or auto: scaled by load on a cluster (1 on a local Ray)")
    where.add_argument("--max-replicas", type=int, default=0,
                       help="autoscaling ceiling (default: the cluster's GPUs, or 2 without GPUs)")
    where.add_argument("--cpus-per-replica", type=float, default=1)
    where.add_argument("--max-batch-size", type=int, default=8, help="images scored together (dynamic batching)")
    where.add_argument("--batch-wait-ms", type=float, default=10, help="how long a batch waits to fill")
    lim = p.add_argument_group("request limits (answered 413)")
    lim.add_argument("--max-upload-mb", type=float, default=20)
    lim.add_argument("--max-pixels", type=float, default=40e6, help="pixels per image, read from its header")
    lim.add_argument("--max-clip-s", type=float, default=30, help="longest short clip (mp4, mov, webm, mkv) taken")
    lim.add_argument("--clip-fps", type=float, default=2, help="frames per second sampled from a clip")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


def run(args) -> int:
    """``defr serve``: checks, then :func:`pipeline.serve.server.serve_model` until SIGTERM / Ctrl-C."""
    from pipeline.classes.space import model_classes
    from pipeline.distributed import RayConnectError
    from pipeline.inference.detect_split import check_mmdet
    from pipeline.inference.detector_predictor import DetectorSpec
    from pipeline.inference.engine import shippable
    from pipeline.inference.pictures import PictureOptions
    from pipeline.model import read_model_config
    from pipeline.regions.pairs import PairParams
    from pipeline.regions.scorer import ScoreParams
    from pipeline.serve.config import ModelSettings, ServeOptions, read_token, token_digest
    from pipeline.serve.server import check_bind, serve_model
    from pipeline.storage.credentials import mask

    if args.replicas != "auto" and not (args.replicas.isdigit() and int(args.replicas) >= 1):
        raise ValueError(f"--replicas {args.replicas}: expected a number >= 1 or auto")
    if min(args.max_batch_size, args.max_upload_mb, args.max_pixels, args.max_clip_s, args.clip_fps) <= 0 \
            or not 0 < args.port < 65536:
        raise ValueError("--max-batch-size, --max-upload-mb, --max-pixels, --max-clip-s and --clip-fps must be "
                         "positive, --port in 1..65535")
    token = read_token(args.token_file)
    digest = token_digest(token) if token else None
    check_bind(args.host, digest)
    config = read_model_config(args.model)
    if not model_classes(config).has_objects:
        raise ValueError(f"{args.model}: the model's classes involve no COCO object, so no box pair can score "
                         "them: defr serve does HOI detection (use `defr classify` for image-level classes)")
    detector = None
    if args.detector or args.detector_checkpoint:
        if not (args.detector and args.detector_checkpoint):
            raise ValueError("--detector and --detector-checkpoint go together (checkpoint 'random': random "
                             "weights, tests and demos only)")
        detector = DetectorSpec(config=args.detector, checkpoint=args.detector_checkpoint,
                                test_scale=args.detector_scale, trusted_checkpoint=args.trusted_checkpoint,
                                seed=args.detector_seed, score_floor=args.score_floor)
        check_mmdet(detector)
    notes = ([DEMO_NOTE] if config.metadata.get("demo_only") else []) + \
            ([RANDOM_DETECTOR_NOTE] if detector and detector.checkpoint == "random" else [])
    settings = ModelSettings(
        checkpoint=shippable(args.model),
        pairs=dataclasses.asdict(PairParams(score_threshold=args.score_threshold)),
        scoring=dataclasses.asdict(ScoreParams(top_k=args.top_k)),
        boxes={"score_floor": args.score_floor, "max_per_image": 100},
        detector=dataclasses.asdict(detector) if detector else None,
        picture=dataclasses.asdict(PictureOptions(note=" | ".join(notes))), notes=notes,
        max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_pixels=int(args.max_pixels),
        max_clip_s=args.max_clip_s, clip_fps=args.clip_fps,
        max_batch_size=args.max_batch_size, batch_wait_s=args.batch_wait_ms / 1000, token_sha256=digest)
    options = ServeOptions(host=args.host, port=args.port, ray_address=args.ray_address, replicas=args.replicas,
                           max_replicas=args.max_replicas, device=args.device, cpus_per_replica=args.cpus_per_replica)
    try:
        return serve_model(settings, options)
    except RayConnectError as e:
        print(f"defr serve: error: {mask(str(e))}", file=sys.stderr)
        return 2
