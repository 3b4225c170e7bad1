"""score_regions' attention figures: which images the actors are asked to draw, and what the driver writes."""
import pyarrow as pa
import pytest

from pipeline.inference.score_split import likely_figures, write_figures
from pipeline.regions.pairs import PairParams

PERSON, DOG = 0, 16


def _rows():
    """Detection rows of three 100x100 images: 1 a dog alone (no pair), 2 and 3 a person and a dog."""
    box = [10.0, 10.0, 50.0, 50.0]
    return pa.table({"image_id": [1, 2, 3], "width": [100, 100, 100], "height": [100, 100, 100],
                     "boxes": [box, box + box, box + box], "labels": [[DOG], [PERSON, DOG], [PERSON, DOG]],
                     "scores": [[0.9], [0.9, 0.8], [0.9, 0.8]]})


def test_the_actors_draw_the_first_images_whose_boxes_make_a_pair():
    assert likely_figures(_rows(), PairParams(), 1) == [2]
    assert likely_figures(_rows(), PairParams(), 5) == [2, 3]
    assert likely_figures(_rows(), PairParams(), 0) == []
    assert likely_figures(_rows(), PairParams(score_threshold=0.85), 5) == []   # the dogs fall under it


def _result(ids, hois, pngs):
    return pa.table({"image_id": pa.array(ids, pa.int64()), "hoi": pa.array(hois, pa.list_(pa.int16())),
                     "attention": pa.array(pngs, pa.binary())})


def test_the_driver_writes_the_first_images_with_detections(tmp_path):
    # Image 2 scored no class (no rows), so the figures are of 3 and 4; 4 was not drawn in the first run.
    first = _result([2, 3, 4, 5], [[], [7], [8], [9]], [None, b"png3", None, None])
    asked = []

    def rerun(ids):
        asked.append(ids)
        return _result(ids, [[8]], [b"png4"])

    assert write_figures(first, 2, tmp_path, rerun) == 2
    assert asked == [[4]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_3.png", "image_4.png"]
    assert (tmp_path / "image_4.png").read_bytes() == b"png4"
    (tmp_path / "one").mkdir()
    assert write_figures(first, 1, tmp_path / "one", rerun) == 1 and asked == [[4]]  # no rerun
    assert write_figures(first, 0, tmp_path, rerun) == 0


def test_a_figure_that_never_comes_back_is_an_error(tmp_path):
    first = _result([3], [[7]], [None])
    with pytest.raises(RuntimeError, match="no attention figure came back for image 3"):
        write_figures(first, 1, tmp_path, lambda ids: _result(ids, [[7]], [None]))
