"""One precision policy (pipeline/precision.py) for regional scoring: what each setting resolves to, bf16
autocast ranks the same pairs first as fp32 with scores within a stated bound (bf16 autocast runs on CPU
too), and the masked blocks never read a device tensor on the host (no GPU sync per block)."""
import copy

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pipeline.classes.space import ClassSpace
from pipeline.model import ModelConfig, build_model
from pipeline.placement import Placement
from pipeline.precision import effective, resolve
from pipeline.regions import masked_vit as mv
from pipeline.regions.pairs import PairParams, make_pairs
from pipeline.regions.scorer import RegionScorer, ScoreParams

# The bound stated in docs/regional_scoring.md. Measured: max |score difference| 0.004 with this test's
# inputs, 0.005 (tiny) and 0.013 (ViT-B/32, random weights) in `python -m bench precision`; top-10 overlap
# 1.0 here, 0.9-1.0 there.
SCORE_BOUND = 0.02
TOP_K, MIN_OVERLAP = 10, 0.8


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None).eval()


def test_policy_resolves_per_device_and_refuses_unknown_names():
    assert resolve("auto", "cpu") is None and resolve("auto", "cuda") is torch.bfloat16
    assert resolve("bf16", "cpu") is torch.bfloat16 and resolve("fp32", "cuda") is None
    assert (effective("auto", "cuda"), effective("auto", "cpu"), effective("bf16", "cpu")) == ("bf16", "fp32", "bf16")
    with pytest.raises(ValueError, match=r"precision 'fp16': expected one of \('auto', 'bf16', 'fp32'\)"):
        resolve("fp16", "cuda")
    with pytest.raises(ValueError, match="placement precision 'half'"):
        Placement(precision="half")


def scenes(n=4, seed=0):
    """Images with people and objects at random places, sizes and detection scores."""
    g = np.random.default_rng(seed)
    pairs, sizes = [], []
    for i in range(n):
        w, h = 640.0, 427.0
        xy = g.uniform(0, [w - 80, h - 80], (6, 2))
        boxes = np.concatenate([xy, np.minimum(xy + g.uniform(60, 300, (6, 2)), [w, h])], 1)
        labels = np.array([0, 0, 0, 1, 17, 41])  # three people, a bicycle, a horse, a cup (COCO-80)
        pairs.append(make_pairs(boxes, labels, g.uniform(0.3, 1.0, 6), w, h, PairParams(), i))
        sizes.append((w, h))
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed)), pairs, sizes


def test_bf16_ranks_the_same_pairs_first_within_the_bound(tiny):
    images, pairs, sizes = scenes()
    out = {p: RegionScorer(tiny, ScoreParams(top_k=TOP_K), ClassSpace.hico(), precision=p).score(
        list(range(len(pairs))), images, pairs, sizes) for p in ("fp32", "bf16")}
    for i in range(len(pairs)):
        rows = {p: t.filter(pc.equal(t["image_id"], i)).to_pylist() for p, t in out.items()}
        key = lambda r: (tuple(r["human_box"]), tuple(r["object_box"]), r["hoi"])  # noqa: E731
        ref, low = ({key(r): r["score"] for r in rows[p]} for p in ("fp32", "bf16"))
        assert len(ref) == TOP_K
        assert len(ref.keys() & low.keys()) / TOP_K >= MIN_OVERLAP, f"image {i}: top-{TOP_K} differ"
        assert key(rows["fp32"][0]) in low, f"image {i}: fp32's best (pair, class) left bf16's top {TOP_K}"
        diff = max(abs(ref[k] - low[k]) for k in ref.keys() & low.keys())
        assert 0 < diff <= SCORE_BOUND, f"image {i}: bf16 scores differ from fp32 by {diff}"


class HostOps(TorchDispatchMode):
    """Records every op that touches a CPU tensor (on a GPU: host work, a copy, a stream sync)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(t.device.type == "cpu" for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_masked_blocks_never_touch_the_host(tiny):
    """The model on the meta device (where a host read of a tensor raises) and the pairs' images on the
    CPU: the host work is the same for 1 and 3 masked blocks (none per block), and is copies only."""
    visual = copy.deepcopy(tiny.visual).to("meta")
    n = int(np.prod(visual.grid_size))
    tokens, rows = torch.empty(2, 1 + n, 64, device="meta"), torch.zeros(4, 1 + n, device="meta")
    host = {}
    for layers in (1, 3):
        with HostOps() as seen:
            cls, w = mv.masked_tail(visual, tokens, torch.tensor([0, 1, 1, 0]), rows, layers, return_weights=True)
        assert cls.shape == (4, 1, 64) and w.shape == (4, 2, 1 + n)
        host[layers] = seen.ops
    assert host[1] == host[3], f"host work per masked block: {host[3]}"
    assert set(host[1]) <= {"aten.lift_fresh.default", "aten.detach.default", "aten._to_copy.default"}, host[1]


def test_the_placement_precision_reaches_every_predictor(tiny, tmp_path):
    """predict / defr classify (score_images) and score_regions / defr detect (score_rows), in-process:
    ``auto`` is fp32 on CPU, exactly; ``bf16`` runs the model under bf16 autocast (different scores)."""
    import pyarrow as pa

    from pipeline.cli.commands import _placement, parser
    from pipeline.inference.image_predictor import score_images
    from pipeline.inference.pair_predictor import hoi_table, score_rows
    from pipeline.model import save_checkpoint
    from tests.training_inputs import tiny_images

    save_checkpoint(tiny, tmp_path / "model")
    images = tiny_images(tmp_path, n_train=2, n_val=0).select(["image_id", "uri", "width", "height"])
    rows = images.append_column("boxes", pa.array([[0, 0, 40, 50, 30, 5, 70, 45]] * 2, pa.list_(pa.float32()))) \
        .append_column("labels", pa.array([[0, 17]] * 2, pa.list_(pa.int16()))) \
        .append_column("scores", pa.array([[0.9, 0.8]] * 2, pa.list_(pa.float32())))
    out = {}
    for p in ("auto", "fp32", "bf16"):
        args = parser().parse_args(["detect", "x.jpg", "--model", "m", "--out", "o", "--precision", p])
        where = _placement(args)
        assert where.precision == p
        scores = score_images(images, str(tmp_path / "model"), where, ray=False).table["scores"].to_pylist()
        hois = hoi_table(score_rows(rows, str(tmp_path / "model"), PairParams(), ScoreParams(top_k=5), where,
                                    ray=False).table)
        out[p] = (np.asarray(scores), hois["score"].to_numpy())
    assert all(np.array_equal(a, b) for a, b in zip(out["auto"], out["fp32"]))
    assert all(len(a) and not np.array_equal(a, b) for a, b in zip(out["bf16"], out["fp32"]))
    with pytest.raises(SystemExit):
        parser().parse_args(["classify", "x.jpg", "--model", "m", "--precision", "fp16"])
