"""pipeline.video on tiny clips written here with PyAV: decoding as a stream, sampling by time, the
annotated .mp4, linking pairs across frames and smoothing their scores; the boxes table's frame column."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import require_module

av = require_module("av", "PyAV decodes and encodes the videos of defr detect (pip install av)")

from pipeline.detection.precomputed import read_boxes_table  # noqa: E402
from pipeline.video.frames import MAX_FPS, ClipReader, VideoError, sample_rate  # noqa: E402
from pipeline.video.mp4 import Mp4Writer  # noqa: E402
from pipeline.video.tracks import FramePair, Linking, PairTracker  # noqa: E402


def _clip(path, n: int, fps: int, size=(64, 48)):
    """A clip whose frame k is a flat grey of level 10 * k (readable back after lossy coding)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        for k in range(n):
            frame = np.full((size[1], size[0], 3), 10 * k, np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def _level(image) -> int:
    return round(float(np.asarray(image).mean()) / 10)


def test_frames_are_streamed_and_sampled_by_time(tmp_path):
    clip = _clip(tmp_path / "c.mp4", 12, 12)
    with ClipReader(str(clip)) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps, reader.info.frames) == (64, 48, 12.0, 12)
        frames = list(reader.frames(sample_rate(reader.info.fps)))    # default: the clip's own 12 fps
    assert [f.index for f in frames] == list(range(12)) == [_level(f.image) for f in frames]
    assert [f.time_s for f in frames] == pytest.approx([k / 12 for k in range(12)], abs=1e-3)
    with ClipReader(str(clip)) as reader:
        frames = list(reader.frames(4.0))                            # every third frame, by time
        assert reader.decoded == 12 and reader.problem == ""
    assert [f.index for f in frames] == [0, 3, 6, 9] == [_level(f.image) for f in frames]
    assert sample_rate(60.0) == MAX_FPS == 30 and sample_rate(24.0) == 24.0 and sample_rate(24.0, 100) == 24.0
    assert sample_rate(None, 5) == 5 and sample_rate(None) == MAX_FPS
    with pytest.raises(ValueError, match="--fps -1"):
        sample_rate(24.0, -1)


def test_a_file_that_is_no_video_names_itself_in_one_line(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    with pytest.raises(VideoError, match=r"notes\.mp4: cannot be read as a video") as e:
        ClipReader(str(bad))
    assert "\n" not in str(e.value)
    with pytest.raises(VideoError, match=r"gone\.mkv: cannot be read as a video: No such file"):
        ClipReader(str(tmp_path / "gone.mkv"))
    cut = tmp_path / "cut.mp4"           # the header and nothing else: no frame decodes
    cut.write_bytes(_clip(tmp_path / "c.mp4", 12, 12).read_bytes()[:600])
    with pytest.raises(VideoError, match=r"cut\.mp4: "):
        with ClipReader(str(cut)) as reader:
            list(reader.frames(12.0))


def test_annotated_mp4_has_every_frame_at_the_rate_even_sized(tmp_path):
    from PIL import Image

    with Mp4Writer(tmp_path / "out.mp4", 7.5) as writer:
        for k in range(9):   # level 20 k, with noise (frames of some size); odd sizes: made even
            noise = np.random.default_rng(k).integers(0, 40, (121, 161, 3))
            writer.write(Image.fromarray((20 * k + noise).astype(np.uint8)))
    assert writer.codec == "libx264"
    with av.open(str(tmp_path / "out.mp4")) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 7.5
    assert len(frames) == 9 and (frames[0].width, frames[0].height) == (160, 120)
    assert [round((float(f.to_ndarray(format="rgb24").mean()) - 19.5) / 20) for f in frames] == list(range(9))
    # Its index is at the start (a browser plays it while loading): cut short, its first frames still decode.
    data = (tmp_path / "out.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:int(len(data) * 0.7)])
    with ClipReader(str(tmp_path / "cut.mp4")) as reader:
        frames = list(reader.frames(7.5))
        assert 0 < len(frames) < 9 and reader.problem.startswith(f"only {len(frames)} of the 9 frames the file announces")


def _pair(h, o, label=17, **scores):
    return FramePair(np.asarray(h, float), np.asarray(o, float), label, {int(k[1:]): v for k, v in scores.items()})


def test_pairs_are_linked_by_overlap_and_scores_smoothed():
    tracker = PairTracker(Linking(iou=0.5, alpha=0.5, max_gap=1))
    h, o = [0, 0, 10, 20], [10, 0, 30, 20]
    a, b = tracker.update(0, [_pair(h, o, c1=0.8, c2=0.6), _pair([50, 0, 60, 20], [60, 0, 80, 20], c1=0.4)])
    assert (a.id, b.id) == (0, 1) and a.scores == {1: 0.8, 2: 0.6}
    # Moved a little (IoU 0.67 and 0.82): the same track; the pairs come in the other order; c2 below top-k.
    b2, a2 = tracker.update(1, [_pair([51, 0, 61, 20], [61, 0, 81, 20], c1=0.2), _pair([2, 0, 12, 20], [12, 0, 32, 20], c1=0.4)])
    assert (a2.id, b2.id) == (0, 1)
    assert a2.scores == pytest.approx({1: 0.5 * 0.4 + 0.5 * 0.8, 2: 0.5 * 0.6}) and b2.scores[1] == pytest.approx(0.3)
    # Same boxes but another object category, or boxes that moved too far: new tracks.
    c, d = tracker.update(2, [_pair([2, 0, 12, 20], [12, 0, 32, 20], label=16, c1=0.9), _pair([30, 0, 40, 20], [60, 0, 70, 20], c1=0.9)])
    assert (c.id, d.id) == (2, 3) and c.scores == {1: 0.9}
    # Track 0 missed frame 2 (1 frame <= max_gap): it still links at frame 3; by frame 6 it missed 4 and 5: ended.
    assert tracker.update(3, [_pair([2, 0, 12, 20], [12, 0, 32, 20], c1=0.4)])[0].id == 0
    assert tracker.update(6, [_pair([2, 0, 12, 20], [12, 0, 32, 20], c1=0.4)])[0].id == 4


def test_boxes_table_frames_of_videos_and_rows_that_match_nothing(tmp_path):
    images = pa.table({"image_id": [0], "file_name": ["a.jpg"]})
    videos = pa.table({"image_id": [1], "file_name": ["clip.mp4"]})
    path = tmp_path / "boxes.csv"
    path.write_text("image,frame,category,box,score\n"
                    'clip.mp4,0,person,"[1, 2, 30, 40]",0.9\n'
                    'clip.mp4,0,horse,"[5, 5, 50, 45]",0.8\n'
                    'clips/clip.mp4,3,person,"[2, 2, 31, 41]",0.7\n'     # found by its last path part
                    'a.jpg,,Traffic Light,"[1, 1, 9, 9]",0.5\n'
                    'clip.mp4,,person,"[1, 2, 30, 40]",0.9\n'            # a video's row without a frame
                    'a.jpg,2,person,"[1, 2, 30, 40]",0.9\n'              # a frame for an image
                    'clip.mp4,1.5,person,"[1, 2, 30, 40]",0.9\n'         # not a frame index
                    'clip.mp4,4,person,"[1, 2, 30]",0.9\n'               # not a box
                    'other.mp4,0,person,"[1, 2, 30, 40]",0.9\n')
    dets, frames, rejects, meta = read_boxes_table(str(path), images, "coco80", videos)
    assert [d.labels.tolist() for d in dets] == [[9]] and meta["rows"] == 9          # traffic light = 9
    assert sorted(frames[1]) == [0, 3]
    assert frames[1][0].boxes.tolist() == [[1, 2, 30, 40], [5, 5, 50, 45]] and frames[1][0].labels.tolist() == [0, 17]
    assert frames[1][3].scores.tolist() == [0.7]
    assert [(item, reason) for _, item, reason in rejects] == [
        ("row 4", "'clip.mp4' is a video: its rows need a frame (0-based index of the decoded frame)"),
        ("row 5", "frame 2 given for 'a.jpg', which is an image, not a video"),
        ("row 6", "frame 1.5 is not a frame index (a whole number >= 0)"),
        ("row 7", "box '[1, 2, 30]' is not [x1, y1, x2, y2]"),
        ("row 8", "image 'other.mp4' is not an image or video of the image list")]
    (tmp_path / "bad.csv").write_text('image,frame,category,box,score\nclip.mp4,2,kangaroo,"[1, 2, 3, 4]",0.5\n')
    with pytest.raises(ValueError, match=r"row 0: category 'kangaroo' is not a COCO class"):
        read_boxes_table(str(tmp_path / "bad.csv"), images, "coco80", videos)
