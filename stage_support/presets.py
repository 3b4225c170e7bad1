"""The paper's configurations as ready params: one ``dvc exp run -S ...`` line per table row.

    dvc exp run $(python -m stage_support.presets hico-vit-b16 --gpus 8) -S prepare.root=/data/hico
    python -m stage_support.presets            # the tables of docs/training.md (tests keep them equal)

Each preset is a set of params.yaml keys applied on top of the committed params.yaml (DVC's ``-S``), so
everything a preset does not name (splits, detection, evaluation, placement) keeps its value. Placement is
not part of a preset: ``--gpus N`` adds ``-S placement.train.use_gpu=true -S placement.train.num_workers=N``
(one Ray Train worker per GPU); the global batch stays the paper's 128, split by the workers
(:func:`pipeline.training.sampling.split_batch`).
Pretrained weights (``openai``) are downloaded by open_clip on first use; the embeddings come from the text
tower of the same CLIP model (Table 5, "CLIP embedding"), or BERT where the row says so.
"""
from __future__ import annotations

import sys

# The paper's fine-tuning recipe (Sec. 4.1): ViT/ResNet CLIP backbone at 672 px, AdamW without weight decay,
# lr 1.5e-5 for CLIP backbones, cosine with warm restarts every 5 epochs, 10 epochs, batch 128,
# over-sampling to 40 per class, LSE-Sign, gamma 100, language-embedding init.
RECIPE = {"train.demo_only": False, "train.pretrained": "openai", "train.image_size": 672, "train.lr": 1.5e-5,
          "train.epochs": 10, "train.restart_epochs": 5, "train.global_batch": 128, "train.min_per_class": 40,
          "train.gamma": 100, "train.loss": "lse_sign", "train.init": "text", "train.classifier_position": "auto"}


def _clip(model: str, dataset: str = "hico") -> dict:
    """The recipe with ``model`` as backbone and its own CLIP text tower for the embeddings."""
    return {"prepare.dataset": dataset, **RECIPE, "train.model": model, "embed_text.backend": "open_clip",
            "embed_text.model": model, "embed_text.pretrained": "openai"}


BERT = {"embed_text.backend": "transformers", "embed_text.model": "bert-base-uncased", "embed_text.pretrained": "",
        "embed_text.pooling": "cls"}

# name -> (the paper's table row, its mAP, the keys)
PRESETS: dict[str, tuple[str, float, dict]] = {
    "hico-vit-b16": ("Tables 2, 9: DEFR/16, CLIP ViT-B/16", 65.6, _clip("ViT-B-16")),
    "hico-vit-b32": ("Tables 2, 5-9: DEFR/32, CLIP ViT-B/32", 60.5, _clip("ViT-B-32")),
    "hico-rn101": ("Table 9: CLIP ResNet-101", 53.6, _clip("RN101")),
    "hico-rn50": ("Table 9: CLIP ResNet-50", 49.7, _clip("RN50")),
    "hico-vit-b32-bce": ("Tables 6, 7: BCE instead of LSE-Sign", 57.9, _clip("ViT-B-32") | {"train.loss": "bce"}),
    "hico-vit-b32-weighted-bce": ("Table 7: weighted BCE", 54.7,
                                  _clip("ViT-B-32") | {"train.loss": "weighted_bce"}),
    "hico-vit-b32-focal": ("Table 7: focal loss (gamma 2, alpha 0.25)", 53.2,
                           _clip("ViT-B-32") | {"train.loss": "focal"}),
    "hico-vit-b32-random-init": ("Table 5: CLIP backbone, random classifier init", 36.8,
                                 _clip("ViT-B-32") | {"train.init": "random"}),
    "hico-vit-b32-bert": ("Tables 5, 6: CLIP backbone, BERT embedding init", 51.0, _clip("ViT-B-32") | BERT),
    "hico-vit-b32-bert-bce": ("Table 6: CLIP backbone, BERT embedding init, BCE", 44.4,
                              _clip("ViT-B-32") | BERT | {"train.loss": "bce"}),
    **{f"hico-vit-b32-gamma{g}": (f"Table 8: gamma {g}", m, _clip("ViT-B-32") | {"train.gamma": g})
       for g, m in ((50, 60.4), (150, 59.1), (300, 57.2), (500, 53.0))},
    "mpii-vit-b16": ("Table 4: MPII, ViT-B/16 (loss not published: LSE-Sign)", 55.3, _clip("ViT-B-16", "mpii")),
    "mpii-rn101": ("Table 4: MPII, ResNet-101 (loss not published: LSE-Sign)", 43.6, _clip("RN101", "mpii")),
}


def _value(v) -> str:
    return "true" if v is True else "false" if v is False else "''" if v == "" else str(v)


def arguments(name: str) -> str:
    """The ``-S key=value`` arguments of a preset, for ``dvc exp run``."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        raise KeyError(f"no preset {name!r}" + (f"; did you mean {close[0]!r}?" if close else "") +
                       f" (presets: {', '.join(PRESETS)})")
    return " ".join(f"-S {k}={_value(v)}" for k, v in PRESETS[name][2].items())


def gpu_arguments(gpus: int) -> str:
    """The ``-S`` arguments that train on ``gpus`` GPUs: one Ray Train worker per GPU."""
    return f"-S placement.train.use_gpu=true -S placement.train.num_workers={gpus}"


GPUS = (1, 4, 8)  # the node sizes docs/training.md shows the paper's batch on


def gpu_markdown(name: str = "hico-vit-b16") -> str:
    """The commands of docs/training.md that train ``name`` on 1, 4 and 8 GPUs, each with its batch split."""
    from pipeline.training.sampling import split_batch
    from stage_support.schema import PLACEMENT

    batch, cap = PRESETS[name][2]["train.global_batch"], PLACEMENT["train"]["micro_batch"].default
    lines = []
    for gpus in GPUS:
        split = split_batch(batch, gpus, cap)
        lines += [f"# {gpus} GPU(s): {split.describe()}",
                  f"dvc exp run $(python -m stage_support.presets {name} --gpus {gpus}) -S prepare.root=/data/hico"]
    return "```\n" + "\n".join(lines) + "\n```\n"


def markdown() -> str:
    """The presets table of docs/training.md."""
    lines = ["| preset | paper row | paper mAP |", "|---|---|---|"]
    lines += [f"| `{name}` | {row} | {m} |" for name, (row, m, _) in PRESETS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m stage_support.presets", description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help="a preset: prints its -S arguments (no name: the tables)")
    ap.add_argument("--gpus", type=int, help="and the placement on this many GPUs (one worker each)")
    args = ap.parse_args()
    if args.name:
        try:
            print(arguments(args.name) + (f" {gpu_arguments(args.gpus)}" if args.gpus else ""))
        except KeyError as e:
            sys.exit(str(e.args[0]))
    else:
        print(markdown() + "\n" + gpu_markdown(), end="")
