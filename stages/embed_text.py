"""Language embeddings of the class prompts (DEFR's classifier initialisation) + paper Fig. 1.

Laptop (inside .venv; HF_HUB_OFFLINE=1 as the Makefile sets it):
    python -m stages.embed_text --classes data/prepared/classes.parquet \
        --out data/text_embeddings.parquet --plots plots/embeddings
Cluster: the same command on the head node (or `dvc repro embed_text`); 600 prompts take seconds, so the
stage does not distribute work, it uses the node's GPU when one is visible. Point ``placement.embed_text.cache`` at
a team bucket (s3://..., gs://...) to share embeddings between colleagues and runs.

Reads the classes table of prepare (the label space: names, prompt fields, free-text prompts), params.yaml
``embed_text`` (backend, model, pretrained, model_file, pooling, template, no_interaction_template,
name_template, prompts_file; docs/embeddings.md says which template a class gets) and ``placement.embed_text``
(batch_size, cache). Writes ``text_embeddings`` Parquet (hoi, prompt, embedding; schema metadata: model id,
backend, templates, dim, content hash) and t-SNE PNGs of the embeddings.
"""
from __future__ import annotations

import logging

from pipeline.text.cache import EmbeddingCache
from pipeline.text.embed import PromptSettings, embed_classes
from pipeline.text.encoders import text_encoder
from stage_support import console
from stage_support import params as stage_params

PROMPT_PARAMS = ("template", "no_interaction_template", "name_template", "prompts_file")

log = logging.getLogger("stages.embed_text")


def model_choice(p: dict) -> tuple[str, str]:
    """(model, pretrained) for the encoder factory: ``model_file`` replaces the download it names."""
    model, pretrained, model_file = p["model"], p["pretrained"], stage_params.named_file(p["model_file"])
    if not model_file:
        return model, pretrained
    if p["backend"] != "open_clip":
        return model_file, pretrained
    if pretrained:
        raise stage_params.ParamsError(f"params.yaml: embed_text.pretrained = {pretrained!r} and "
                                       f"embed_text.model_file = {model_file!r}: give one of them")
    return model, model_file


def run(classes_path: str, out_path: str, plots_dir: str, p: dict, where: dict | None = None) -> dict:
    """Embeds the prompt of every class and writes the artifacts; returns the metadata written.

    Args:
        p: the validated ``embed_text`` params; ``where``: ``placement.embed_text`` (batch_size, cache).
    """
    where = where or {"batch_size": 256, "cache": ""}
    prompts = PromptSettings(p["template"], p["no_interaction_template"], p["name_template"],
                             stage_params.named_file(p["prompts_file"]))
    try:
        encoder = text_encoder(p["backend"], *model_choice(p), p["pooling"] or "cls")
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"params.yaml embed_text.{e}") from e
    try:
        cache = EmbeddingCache(where["cache"]) if where["cache"] else None
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"params.yaml placement.embed_text.{e}") from e
    try:
        return embed_classes(classes_path, out_path, plots_dir, prompts, encoder, cache, int(where["batch_size"]))
    except (ValueError, FileNotFoundError) as e:
        if str(e).startswith(PROMPT_PARAMS):  # a prompt param that does not fit the classes: name it
            raise type(e)(f"params.yaml embed_text.{e}") from e
        raise


def main(argv: list[str] | None = None) -> int:
    ap = stage_params.parser(__doc__.splitlines()[0])
    ap.add_argument("--classes", required=True, help="classes.parquet of the prepare stage")
    ap.add_argument("--out", required=True, help="text_embeddings.parquet to write")
    ap.add_argument("--plots", required=True, help="directory for the t-SNE PNGs")
    args = ap.parse_args(argv)
    stage_params.setup_logging()
    meta = run(args.classes, args.out, args.plots, stage_params.load("embed_text", args.params),
               stage_params.placement("embed_text", args.params))
    log.info("wrote %s (%s, dim %s, hash %s)", args.out, meta["model_id"], meta["dim"],
             meta["content_hash"][:12])
    return 0


if __name__ == "__main__":
    console.run(main, "embed_text")
