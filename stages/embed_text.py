"""Language embeddings of the HOI class prompts (DEFR's classifier initialisation) + paper Fig. 1.

Laptop (inside .venv; HF_HUB_OFFLINE=1 as the Makefile sets it):
    python -m stages.embed_text --classes data/prepared/classes.parquet \
        --out data/text_embeddings.parquet --plots plots/embeddings
Cluster: the same command on the head node (or `dvc repro embed_text`); 600 prompts take seconds, so the
stage does not distribute work, it uses the node's GPU when one is visible. Point ``placement.embed_text.cache`` at
a team bucket (s3://..., gs://...) to share embeddings between colleagues and runs.

Reads params.yaml ``embed_text`` (backend, model, pretrained, model_file, pooling, template,
no_interaction_template, prompts_file) and ``placement.embed_text`` (batch_size, cache). Writes
``text_embeddings`` Parquet (hoi, prompt, embedding; schema metadata: model id, backend, template, dim,
content hash) and t-SNE PNGs of the embeddings.
"""
from __future__ import annotations

import logging

import pyarrow as pa

from pipeline import schemas, storage
from pipeline.embedding_cache import EmbeddingCache, embed_prompts
from pipeline.embedding_plots import write_embedding_plots
from pipeline.prompts import class_prompts
from pipeline.text_encoders import text_encoder
from pipeline.vocab import hico_vocabulary
from stages import console
from stages import params as stage_params

log = logging.getLogger("stages.embed_text")


def read_hois(classes_path: str) -> list[int]:
    """The hoi ids of the classes table, checked to be unique and within the vocabulary."""
    hois = storage.read_parquet(classes_path, columns=["hoi"]).column("hoi").to_pylist()
    n = len(hico_vocabulary())
    bad = [(row, h) for row, h in enumerate(hois) if h is None or not 0 <= h < n]
    if bad:
        raise ValueError(f"{classes_path} row {bad[0][0]}: hoi {bad[0][1]!r} is not a class id in [0, {n})")
    if len(set(hois)) != len(hois):
        raise ValueError(f"{classes_path}: duplicate hoi ids")
    if not hois:
        raise ValueError(f"{classes_path} has no classes")
    return hois


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
    """Embeds the prompts of every class and writes the artifacts; returns the metadata written.

    Args:
        p: the validated ``embed_text`` params; ``where``: ``placement.embed_text`` (batch_size, cache).
    """
    where = where or {"batch_size": 256, "cache": ""}
    hois = read_hois(classes_path)
    prompts_file = stage_params.named_file(p["prompts_file"])
    try:
        prompts = class_prompts(hois, p["template"], p["no_interaction_template"], prompts_file)
        encoder = text_encoder(p["backend"], *model_choice(p), p["pooling"] or "cls")
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"params.yaml embed_text.{e}") from e
    try:
        cache = EmbeddingCache(where["cache"]) if where["cache"] else None
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"params.yaml placement.embed_text.{e}") from e
    emb, key, hit = embed_prompts(encoder, prompts, cache, batch_size=int(where["batch_size"]))
    log.info("%d prompts -> %s embeddings (%s)", len(prompts), emb.shape,
             "cache hit" if hit else "computed")
    vocab = hico_vocabulary()
    metadata = {
        "model_id": encoder.model_id, "backend": encoder.backend, "model": encoder.model,
        "pretrained": encoder.pretrained, "pooling": encoder.pooling,
        "template": "" if prompts_file else p["template"],
        "no_interaction_template": "" if prompts_file else p["no_interaction_template"],
        "prompts_file": prompts_file, "dim": str(emb.shape[1]), "content_hash": key,
        "demo_random_init": str(encoder.random_init).lower(),
    }
    table = pa.table({"hoi": pa.array(hois, pa.int16()), "prompt": pa.array(prompts, pa.string()),
                      "embedding": pa.array(list(emb), pa.list_(pa.float32()))})
    table = schemas.conform(table, schemas.TEXT_EMBEDDINGS, out_path)
    with storage.atomic_path(plots_dir) as tmp_plots:
        write_embedding_plots(emb, [vocab[h].verb for h in hois], [vocab[h].object for h in hois],
                              tmp_plots, encoder.model_id)
        # Inside the block: if the table cannot be written, the plots are not published either.
        storage.write_parquet(table, out_path, metadata=metadata)
    return metadata


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
