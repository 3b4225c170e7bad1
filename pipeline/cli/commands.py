r"""The ``defr`` command: a trained DEFR model on your own images.

    defr detect photos/ --model models/defr --boxes photos/boxes.json --out results/
    defr detect photos/*.jpg --model models/defr --detector rtmdet_tiny_8xb32-300e_coco \
        --detector-checkpoint rtmdet_tiny.pth --out results/ --attention
    defr classify photos/ --model models/defr --out results/

IMAGES are files, folders, globs, fsspec URIs (s3://, gs://) or text files listing them. A handful of
images run in this process; more (or --ray, or RAY_ADDRESS) run on Ray Data with the same code, one
actor per GPU of the cluster (CPU actors without GPUs). Thin layer over :mod:`pipeline.inference`
(``python -m pipeline.cli`` is the same command).
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

# Imports of the inference side stay inside the functions that need them: `defr evaluate` must start fast
# and never import torch or Ray (tests/unit/test_evaluate_command.py checks).

log = logging.getLogger("defr")
EXAMPLES = r"""examples:
  defr detect photos/ --model models/defr --boxes photos/boxes.json --out results/
  defr detect photos/*.jpg --model models/defr --detector rtmdet_tiny_8xb32-300e_coco \
      --detector-checkpoint rtmdet_tiny.pth --out results/ --attention
  defr detect clip.mp4 --model models/defr --boxes boxes.csv --out results/ --fps 10   # video (docs/video.md)
  defr classify photos/ --model models/defr --out results/
  defr evaluate upt_cache/ --benchmark hicodet --anno instances_test2015.json --out eval/
  defr serve --model models/defr      # Ray Serve: a page at http://127.0.0.1:8000/, POST /v1/detect

IMAGES: files, folders, globs, fsspec URIs (s3://, gs://) or .txt files listing them. Up to 32 images run
in this process; more, --ray or RAY_ADDRESS: Ray Data, one model per GPU (CPU actors without GPUs)."""
OUT_HELP = ("written all at once at the end (nothing on failure); a folder holding an earlier result is "
            "refused unless --overwrite, one holding other files always")
SHOWN = 20  # images reported one per line; the rest are counted (every one is in the summary file)


def _common(p: argparse.ArgumentParser) -> None:
    from pipeline.choices import DEVICES, PRECISIONS
    from pipeline.inference.engine import LOCAL_LIMIT

    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders, globs, URIs, or .txt lists")
    p.add_argument("--model", required=True, help="DEFR checkpoint folder (model.safetensors + config.json) or URI")
    where = p.add_argument_group("where it runs")
    mode = where.add_mutually_exclusive_group()
    mode.add_argument("--ray", dest="ray", action="store_const", const=True, default=None,
                      help=f"run on Ray Data (default: only for more than {LOCAL_LIMIT} images or with RAY_ADDRESS)")
    mode.add_argument("--local", dest="ray", action="store_const", const=False, help="run in this process")
    where.add_argument("--ray-address", default="", help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    where.add_argument("--device", default="auto", choices=DEVICES)
    where.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="the model's autocast: auto = bf16 on a GPU, fp32 on CPU (default: auto)")
    where.add_argument("--batch-size", type=int, default=8)
    where.add_argument("--actors", type=int, default=1, help="CPU actors on Ray when there is no GPU")
    where.add_argument("--cpus-per-actor", type=float, default=1)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="defr", description="A trained DEFR model on your own images: HOI "
                                 "detection (detect) and image-level classes (classify); any model's HICO-DET / HICO results "
                                 "scored with the official protocols (evaluate); the model behind an HTTP API and a "
                                 "web page on Ray Serve (serve).",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    from pipeline.choices import LABEL_SPACES, PATCH_RULES, PRECOMPUTED_FORMATS
    from pipeline.inference.detector_predictor import add_detector_arguments

    sub = ap.add_subparsers(dest="command", required=True, metavar="{detect,classify,evaluate,serve}")
    d = sub.add_parser("detect", help="human-object interactions: every person-object pair scored, drawn")
    _common(d)
    d.add_argument("--out", required=True, help=f"output folder; {OUT_HELP}")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    src = d.add_argument_group("boxes (one source)")
    add_detector_arguments(src)
    src.add_argument("--boxes", help="boxes file: JSON of image name -> [{category, box, score}], a folder of "
                                     "per-image JSON, or a .parquet / .csv table")
    src.add_argument("--boxes-format", default="auto", choices=("auto", *PRECOMPUTED_FORMATS))
    src.add_argument("--label-space", default="coco80", choices=LABEL_SPACES,
                     help="integer labels of a folder or table of boxes")
    # Defaults: the detect and score_regions stages' (tests/unit/test_params_schema.py checks them against the schema).
    s = d.add_argument_group("pairs and scores (defaults: the score_regions stage's)")
    s.add_argument("--score-floor", type=float, default=0.05, help="boxes under it are ignored")
    s.add_argument("--max-per-image", type=int, default=100)
    s.add_argument("--score-threshold", type=float, default=0.2, help="humans and objects kept for pairs")
    s.add_argument("--nms-threshold", type=float, default=0.5)
    s.add_argument("--max-humans", type=int, default=15)
    s.add_argument("--max-objects", type=int, default=15)
    s.add_argument("--masked-layers", type=int, default=1)
    s.add_argument("--patch-rule", default="any", choices=PATCH_RULES)
    s.add_argument("--score-power", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=100, help="(pair, class) results kept per image")
    pic = d.add_argument_group("pictures")
    pic.add_argument("--no-pictures", action="store_true")
    pic.add_argument("--pairs", type=int, default=3, help="pairs drawn per picture")
    pic.add_argument("--classes", type=int, default=3, help="class names per drawn pair")
    pic.add_argument("--attention", action="store_true", help="also the CLS attention of the top pair (paper Fig. 4)")
    vid = d.add_argument_group("videos (.mp4 .mov .webm .mkv: docs/video.md)")
    vid.add_argument("--fps", type=float, help="frames sampled per second (default: the clip's own, at most 30); "
                     "boxes from a table with a frame column (0-based decoded frame); pairs linked across frames by "
                     "box overlap, class scores smoothed along the link (EMA, alpha 0.5); an annotated .mp4 at this "
                     "rate and a contact sheet in videos/")
    c = sub.add_parser("classify", help="the top-k classes of each image, JSON and a contact sheet")
    _common(c)
    c.set_defaults(batch_size=32)  # the predict stage's (placement.predict.batch_size): the same image predictor
    c.add_argument("--out", default="defr_classify", help=f"output folder (default: defr_classify); {OUT_HELP}")
    c.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    c.add_argument("--top-k", type=int, default=5)
    from pipeline.cli.evaluate_results import add_parser as add_evaluate

    add_evaluate(sub)
    from pipeline.serve.command import add_parser as add_serve

    add_serve(sub)
    return ap


def _placement(args):
    from pipeline.placement import Placement

    return Placement(batch_size=args.batch_size, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                     device=args.device, ray_address=args.ray_address, precision=args.precision)


def run_detect(args) -> int:
    from pipeline.cli.result_folder import check_out

    check_out(args.out, args.overwrite)  # before any work (and torch): a bad --out fails in a second
    from pipeline.cli.inputs import expand_images

    inputs = expand_images(args.images, videos=True)  # before torch too: a bad URI fails at once
    from pipeline.inference.engine import use_ray
    from pipeline.inference.detect_split import check_mmdet
    from pipeline.inference.detector_predictor import DetectorSpec
    from pipeline.cli.hoi import HOIOptions, clip_line, detect_hois, write_hoi_results
    from pipeline.inference.pictures import PictureOptions
    from pipeline.regions.pairs import PairParams
    from pipeline.regions.scorer import ScoreParams

    detector = None
    if args.detector or args.detector_checkpoint:
        if not (args.detector and args.detector_checkpoint):
            raise ValueError("--detector and --detector-checkpoint go together (checkpoint 'random': random "
                             "weights, tests and demos only)")
        detector = DetectorSpec(config=args.detector, checkpoint=args.detector_checkpoint,
                                test_scale=args.detector_scale, trusted_checkpoint=args.trusted_checkpoint,
                                seed=args.detector_seed, score_floor=args.score_floor,
                                max_per_image=args.max_per_image)
        check_mmdet(detector)
    options = HOIOptions(
        pairs=PairParams(args.score_threshold, args.nms_threshold, args.max_humans, args.max_objects),
        scoring=ScoreParams(masked_layers=args.masked_layers, patch_rule=args.patch_rule,
                            score_power=args.score_power, top_k=args.top_k),
        score_floor=args.score_floor, max_per_image=args.max_per_image,
        picture=None if args.no_pictures else PictureOptions(args.pairs, args.classes), attention=args.attention,
        fps=args.fps)
    placement = _placement(args)
    result = detect_hois(inputs, args.model, options, placement, ray=use_ray(inputs.table.num_rows, placement, args.ray),
                         detector=detector, boxes=args.boxes, boxes_format=args.boxes_format,
                         label_space=args.label_space)
    written = write_hoi_results(result, args.out, args.overwrite)
    for note in result.notes:
        print(f"NOTE: {note}")
    best = {}
    for h in result.hois:
        best.setdefault(h["image"], []).append(h)
    shown = result.images[:SHOWN] if len(result.images) > SHOWN + 5 else result.images
    for im in shown:
        if im["status"] == "rejected":
            print(f"{im['file_name']}: not used: {im['note']}")
        elif im.get("video"):
            print(f"{im['file_name']}: {clip_line(im)}")
        elif im["pairs"]:
            top = ", ".join(f"{h['name']} {h['score']:.2f}" for h in best.get(im["image"], [])[:3])
            print(f"{im['file_name']}: {im['pairs']} pair(s) from {im['boxes']} boxes ({im['persons']} person); "
                  f"best: {top}")
        else:
            print(f"{im['file_name']}: no pairs: {im['note']}")
    if len(shown) < len(result.images):
        rest = result.images[len(shown):]
        print(f"... and {len(rest)} more image(s): {sum(1 for i in rest if i.get('pairs'))} with pairs, "
              f"{sum(1 for i in rest if i['status'] == 'no pairs')} without, "
              f"{sum(1 for i in rest if i['status'] == 'rejected')} not used (all in {written['summary']})")
    for arg, why in inputs.problems:
        print(f"{arg}: {why}")
    box_rejects = [r for r in result.rejects if " box [" in str(r["image"])]
    if box_rejects:
        print(f"{len(box_rejects)} box(es) dropped (listed in {written['summary']}): "
              f"{sorted({r['reason'] for r in box_rejects})}")
    if written.get("videos") or written.get("frames"):
        print(f"videos: annotated .mp4 and contact sheet in {written.get('videos', '-')}, one line per frame in "
              f"{written['frames']}")
    n_results = len(result.hois) + sum(c.hois.num_rows for c in result.clips.values())
    print(f"{n_results} (pair, class) results of {sum(1 for i in result.images if i.get('pairs'))} "
          f"image(s) in {written['hoi_detections']} (and .parquet); pictures in {written.get('pictures', '-')}; "
          f"{result.info['mode']}, {result.info['seconds']:.1f} s")
    return 0 if any(i["status"] != "rejected" for i in result.images) else 1


def run_classify(args) -> int:
    from pipeline.cli.result_folder import check_out

    check_out(args.out, args.overwrite)  # before any work (and torch)
    from pipeline.cli.inputs import expand_images

    inputs = expand_images(args.images)  # before torch too: a bad URI fails at once
    from pipeline.inference.engine import use_ray
    from pipeline.cli.classify import classify_images, write_classify_results

    placement = _placement(args)
    result = classify_images(inputs, args.model, args.top_k, placement,
                             ray=use_ray(inputs.table.num_rows, placement, args.ray))
    written = write_classify_results(result, args.out, args.overwrite)
    for note in result.notes:
        print(f"NOTE: {note}")
    for im in result.images[:SHOWN]:
        print(f"{im['file_name']}: " + ", ".join(f"{t['name']} {t['score']:.2f}" for t in im["top"]))
    if len(result.images) > SHOWN:
        print(f"... and {len(result.images) - SHOWN} more image(s) in {written['classes']}")
    for r in result.rejects:
        print(f"{r['image']}: not used: {r['reason']}")
    print(f"top {args.top_k} classes of {len(result.images)} image(s) in {written['classes']}; "
          f"contact sheet {written.get('contact_sheet', '-')}")
    return 0 if result.images else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from pipeline.storage.credentials import MaskFilter, mask

    for handler in logging.getLogger().handlers:  # no URI credentials in any log line (ours, Ray's, botocore's)
        if not any(isinstance(f, MaskFilter) for f in handler.filters):
            handler.addFilter(MaskFilter())
    try:
        if args.command == "evaluate":
            from pipeline.cli.evaluate_results import run as run_evaluate

            return run_evaluate(args)
        if args.command == "serve":
            from pipeline.serve.command import run as run_serve

            return run_serve(args)
        return run_detect(args) if args.command == "detect" else run_classify(args)
    except (ValueError, OSError, ImportError) as e:  # OSError: files, disks and object stores (StorageError)
        print(f"defr {args.command}: error: {mask(str(e))}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - anything else (an SDK's own error, a bug): one masked line
        if args.verbose:
            sys.stderr.write(mask(traceback.format_exc()))
        print(f"defr {args.command}: error: {type(e).__name__}: {mask(str(e))}"
              + ("" if args.verbose else " (-v shows the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
