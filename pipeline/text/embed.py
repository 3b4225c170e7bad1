"""The embed_text stage's work: the prompts of a classes table -> unit-norm embeddings (cached) -> the
``text_embeddings`` table with its metadata, and the t-SNE plots of paper Fig. 1."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from pipeline import schemas, storage
from pipeline.classes.space import check_classes
from pipeline.text.cache import EmbeddingCache, embed_prompts
from pipeline.text.embedding_plots import class_groupings, write_embedding_plots
from pipeline.text.prompts import class_prompts

log = logging.getLogger(__name__)


@dataclass
class PromptSettings:
    """How prompts are made (``embed_text`` params): templates, or one prompt per class from a file."""
    template: str
    no_interaction_template: str
    name_template: str
    prompts_file: str = ""


def embed_classes(classes_path: str, out_path: str, plots_dir: str, prompts: PromptSettings, encoder,
                  cache: EmbeddingCache | None = None, batch_size: int = 256) -> dict[str, str]:
    """Embeds one prompt per class of ``classes_path``; writes the table and the plots (both atomically,
    the plots published only with the table). Returns the metadata written with the table.

    Args:
        encoder: a :class:`pipeline.text.encoders.TextEncoder` (not loaded on a cache hit).

    Raises:
        ValueError: a malformed classes table, a template that does not fit a class, a bad prompts file.
    """
    classes = check_classes(storage.read_parquet(classes_path), classes_path)
    texts = class_prompts(classes, prompts.template, prompts.no_interaction_template, prompts.name_template,
                          prompts.prompts_file)
    emb, key, hit = embed_prompts(encoder, texts, cache, batch_size=batch_size)
    log.info("%d prompts -> %s embeddings (%s)", len(texts), emb.shape, "cache hit" if hit else "computed")
    templates = {} if prompts.prompts_file else {"template": prompts.template,
                                                  "no_interaction_template": prompts.no_interaction_template,
                                                  "name_template": prompts.name_template}
    metadata = {
        "model_id": encoder.model_id, "backend": encoder.backend, "model": encoder.model,
        "pretrained": encoder.pretrained, "pooling": encoder.pooling,
        "template": templates.get("template", ""),
        "no_interaction_template": templates.get("no_interaction_template", ""),
        "name_template": templates.get("name_template", ""),
        "prompts_file": prompts.prompts_file, "dim": str(emb.shape[1]), "content_hash": key,
        "demo_random_init": str(encoder.random_init).lower(),
    }
    table = pa.table({"hoi": classes.column("hoi").cast(pa.int16()), "prompt": pa.array(texts, pa.string()),
                      "embedding": pa.array(list(emb), pa.list_(pa.float32()))})
    table = schemas.conform(table, schemas.TEXT_EMBEDDINGS, out_path)
    with storage.atomic_path(plots_dir) as tmp_plots:
        write_embedding_plots(emb, class_groupings(classes), tmp_plots, encoder.model_id)
        # Inside the block: if the table cannot be written, the plots are not published either.
        storage.write_parquet(table, out_path, metadata=metadata)
    return metadata
