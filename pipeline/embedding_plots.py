"""Paper Fig. 1: a 2-D t-SNE of the class embeddings, one PNG coloured by verb and one by object.

Classes of one group share a colour; the larger groups are named at their centroid (117 verbs and 80
objects are too many for a legend). Rendering uses matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def tsne_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, D] unit vectors -> [N, 2] t-SNE coordinates (cosine metric, PCA init, fixed seed)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(embeddings)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 embeddings, got {n}")
    # perplexity must stay below the number of points; 30 is sklearn's default for large N.
    perplexity = float(min(30.0, (n - 1) / 3))
    # One thread: for ~600 points OpenMP threads cost more than they give, and on a shared machine
    # oversubscription made t-SNE 10x slower (58 s vs 4.6 s measured at load 10 on 2 cores).
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", n_jobs=1,
                    random_state=seed).fit_transform(np.asarray(embeddings, np.float32))


def plot_groups(xy: np.ndarray, groups: Sequence[str], title: str, path: str | Path,
                n_named: int = 25) -> Path:
    """Scatter of ``xy`` coloured by ``groups``; names the ``n_named`` largest groups; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(groups))
    # Evenly spaced hues in a fixed shuffled order, so that neighbouring names get distinct colours.
    order = np.random.default_rng(0).permutation(len(names))
    palette = plt.get_cmap("hsv")(order / max(len(names), 1))
    index = {g: i for i, g in enumerate(names)}
    colours = palette[[index[g] for g in groups]]
    fig, ax = plt.subplots(figsize=(9, 8), dpi=110)
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=14, linewidths=0.3, edgecolors="black", alpha=0.85)
    groups_arr = np.asarray(groups)
    for name, count in Counter(groups).most_common(n_named):
        if count < 2:
            break
        cx, cy = xy[groups_arr == name].mean(0)
        ax.annotate(name.replace("_", " "), (cx, cy), fontsize=7, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", alpha=0.6, lw=0))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_embedding_plots(embeddings: np.ndarray, verbs: Sequence[str], objects: Sequence[str],
                          out_dir: str | Path, model_id: str, seed: int = 0) -> list[Path]:
    """Writes ``tsne_by_verb.png`` and ``tsne_by_object.png`` (one t-SNE, two colourings) to ``out_dir``."""
    if not len(embeddings) == len(verbs) == len(objects):
        raise ValueError(f"{len(embeddings)} embeddings but {len(verbs)} verbs and {len(objects)} objects")
    xy = tsne_2d(embeddings, seed)
    out_dir = Path(out_dir)
    suffix = f"{len(embeddings)} HOI classes, {model_id}"
    return [plot_groups(xy, verbs, f"t-SNE of class embeddings by verb ({suffix})",
                        out_dir / "tsne_by_verb.png"),
            plot_groups(xy, objects, f"t-SNE of class embeddings by object ({suffix})",
                        out_dir / "tsne_by_object.png")]
