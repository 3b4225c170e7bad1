"""The readers on the real HICO / HICO-DET annotation files (no images) in ../shared/data/hico."""
import numpy as np
import pytest

from pipeline.datasets.adapters import prepare_dataset, read_dataset
from pipeline.datasets.hico_anno import read_anno_mat
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.datasets.hicodet import read_instances_json
from pipeline.rejects import DataLossError


def test_anno_mat_counts(shared_hico):
    splits = read_anno_mat(str(shared_hico / "anno.mat"), hico_vocabulary())
    assert len(splits["train"].file_names) == 38116 and splits["train"].labels.shape == (38116, 600)
    assert len(splits["test"].file_names) == 9658
    test = splits["test"].labels
    assert int((test == 1).sum()) == 20268 and int((test == 0).sum()) == 7872
    assert int((test == -1).sum()) == 61912
    train_pos = (splits["train"].labels == 1).sum(axis=0)
    assert np.array_equal(train_pos, hico_vocabulary().hico_train_positives)


def test_hicodet_test_json_counts_and_box_conversion(shared_hico):
    images, rare = read_instances_json(str(shared_hico / "instances_test2015.json"))
    assert len(images) == 9658
    assert sum(1 for im in images if im.hois) == 9546
    assert not any(im.problem for im in images)   # the 112 images without pairs have empty lists
    assert sum(len(im.hois) for im in images) == 33405
    assert len(rare) == 138 and set(rare) == hico_vocabulary().hicodet_rare
    first = images[0]  # 1-based [320, 306, 359, 349] -> continuous [319, 305, 359, 349]
    assert first.human_boxes[0] == [319.0, 305.0, 359.0, 349.0]


def test_prepare_on_real_annotations_without_images_fails_on_the_lost_split(shared_hico):
    files = {"anno": "", "hicodet_test": "instances_test2015.json", "test_images": "images/test2015"}
    with pytest.raises(DataLossError, match=r"test split images: 9658 of 9658 rejected .*missing image file \(9658\)"):
        prepare_dataset("hico", str(shared_hico), files, decode_images=False, workers=8)
    data = read_dataset("hico", str(shared_hico), files)
    assert sum(len(s.candidates) for s in data.splits) == 9658
    assert sum(len(c.pairs) for s in data.splits for c in s.candidates) == 33405
    # no training boxes: the rare flag comes from the file's official list
    assert int(np.sum(data.rare(np.zeros(600, int), False))) == 138
