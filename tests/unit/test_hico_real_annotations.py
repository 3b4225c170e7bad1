"""The readers on the real HICO / HICO-DET annotation files (no images) in ../shared/data/hico."""
import numpy as np

from pipeline.data.hico import read_anno_mat
from pipeline.data.hicodet import read_instances_json
from pipeline.data.prepare import Sources, prepare_dataset
from pipeline.vocab import hico_vocabulary


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
    assert sum(len(im.hois) for im in images) == 33405
    assert len(rare) == 138 and set(rare) == hico_vocabulary().hicodet_rare
    first = images[0]  # 1-based [320, 306, 359, 349] -> continuous [319, 305, 359, 349]
    assert first.human_boxes[0] == [319.0, 305.0, 359.0, 349.0]


def test_prepare_on_real_annotations_without_images_rejects_every_image(shared_hico):
    src = Sources(root=str(shared_hico), hico_anno="", hicodet_test="instances_test2015.json",
                  test_images="images/test2015")
    out = prepare_dataset(src, hico_vocabulary(), decode_images=False, workers=8)
    assert out.images.num_rows == 0
    assert out.rejects.num_rows == 9658
    assert set(r.split(" (")[0] for r in out.rejects.column("reason").to_pylist()) == {"missing image file"}
    # no training boxes: the rare flag comes from the file's official list
    assert int(np.sum(out.classes.column("rare").to_numpy())) == 138
