"""Paper Fig. 1: a 2-D t-SNE of the class embeddings, one PNG per grouping of the classes (HICO: by verb and
by object; MPII: by category; classes without groups: by name).

Classes of one group share a colour; the larger groups are named at their centroid (117 verbs and 80
objects are too many for a legend); with few groups every one is named. Rendering uses matplotlib's Agg
backend (no display needed).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def tsne_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, D] unit vectors -> [N, 2] t-SNE coordinates (cosine metric, PCA init, fixed seed); below 5 points
    the two principal components."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(embeddings)
    if n < 5:
        # t-SNE's perplexity must stay below (n - 1) / 3; with so few points the PCA plane says as much.
        x = np.asarray(embeddings, np.float64) - np.mean(embeddings, axis=0)
        u = np.linalg.svd(x, full_matrices=False)[0][:, :2] if n > 1 else np.zeros((n, 1))
        return np.pad(u, ((0, 0), (0, 2 - u.shape[1]))).astype(np.float32)
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
    few = len(names) <= n_named   # few groups: name every one, singletons too
    for name, count in Counter(groups).most_common(n_named):
        if count < 2 and not few:
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


def write_embedding_plots(embeddings: np.ndarray, groupings: dict[str, Sequence[str]], out_dir: str | Path,
                          model_id: str, seed: int = 0) -> list[Path]:
    """Writes ``tsne_by_<grouping>.png`` for each grouping (one t-SNE, several colourings) to ``out_dir``.

    Args:
        groupings: grouping name (verb, object, category, name) -> the group of each class.
    """
    for key, groups in groupings.items():
        if len(groups) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(groups)} values of {key!r}")
    xy = tsne_2d(embeddings, seed)
    out_dir = Path(out_dir)
    suffix = f"{len(embeddings)} classes, {model_id}"
    return [plot_groups(xy, groups, f"t-SNE of class embeddings by {key} ({suffix})", out_dir / f"tsne_by_{key}.png")
            for key, groups in groupings.items()]


def class_groupings(classes) -> dict[str, list[str]]:
    """The groupings a classes table offers: verb and object when every class has them, else category
    when every class has one, else the class names."""
    cols = {c: classes.column(c).to_pylist() for c in ("verb", "object", "category", "name")
            if c in classes.column_names}
    full = [c for c in ("verb", "object") if c in cols and None not in cols[c]]
    if full:
        return {c: cols[c] for c in full}
    if "category" in cols and None not in cols["category"]:
        return {"category": cols["category"]}
    return {"name": cols["name"]}
