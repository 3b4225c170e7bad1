"""A video file decoded as a stream of frames (PyAV), sampled at a rate: never the whole clip in memory.

Frames are numbered 0, 1, ... in the order they are decoded (presentation order): the ``frame`` of a boxes
table and of every result. Sampling keeps the first frame of each ``1 / rate`` seconds of the clip's own
timestamps (``floor(t * rate)`` changes), so a rate at or above the clip's keeps every frame and a
variable frame rate is sampled by time, not by count. Frames are taken as stored: a rotation in the
container's metadata (phone videos) is not applied, so boxes are in the stored frame's pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from PIL import Image

from pipeline import storage

# The default rate: the clip's own, at most this many frames per second (a 60 fps clip is sampled at 30).
MAX_FPS = 30.0


class VideoError(ValueError):
    """A file that cannot be read as a video; the message names it."""


@dataclass(frozen=True)
class ClipInfo:
    """What the container says of a clip's video stream (``frames`` and ``fps`` may be unknown: None)."""
    uri: str
    width: int
    height: int
    fps: float | None
    frames: int | None
    duration_s: float | None
    codec: str


@dataclass
class Frame:
    """A decoded frame: its 0-based index among the decoded frames, its time from the clip's first frame,
    and its pixels."""
    index: int
    time_s: float
    image: Image.Image


def sample_rate(clip_fps: float | None, fps: float | None = None) -> float:
    """The sampling rate: ``fps`` when given, else the clip's own capped at :data:`MAX_FPS`; never above
    the clip's rate (where known: sampling cannot add frames).

    Raises:
        ValueError: ``fps`` is not a positive number.
    """
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"--fps {fps}: expected a positive number of frames per second")
    rate = fps if fps is not None else min(clip_fps or MAX_FPS, MAX_FPS)
    return min(rate, clip_fps) if clip_fps else rate


class ClipReader:
    """A clip opened for streaming (a context manager): :attr:`info`, then :meth:`frames`.

    Args:
        uri: a local path or an fsspec URI (read through :func:`pipeline.storage.open_file`).

    Raises:
        VideoError: the file cannot be opened as a video or has no video stream (names the file).
    """

    def __init__(self, uri: str):
        import av

        self.uri = uri
        self.problem = ""       # why decoding stopped before the end of the clip ("" when it did not)
        self.decoded = 0        # frames decoded so far
        self._file = None
        try:
            if storage.is_local(uri):
                self.container = av.open(storage.local_path(uri), "r")
            else:
                self._file = storage.open_file(uri)
                self.container = av.open(self._file, "r")
        except (av.FFmpegError, OSError, ValueError) as e:
            self.close()
            raise VideoError(f"{uri}: cannot be read as a video: {_reason(e)}") from None
        if not self.container.streams.video:
            self.close()
            raise VideoError(f"{uri}: no video stream in the file")
        # FFmpeg's default slice threads: frame threads decode faster but lose the last frames of a file
        # that is cut short without an error (and the model, not decoding, bounds the rate here).
        self.stream = self.container.streams.video[0]
        rate = self.stream.average_rate or self.stream.guessed_rate
        duration = (float(self.stream.duration * self.stream.time_base) if self.stream.duration else
                    self.container.duration / 1e6 if self.container.duration else None)
        ctx = self.stream.codec_context
        self.info = ClipInfo(uri, ctx.width, ctx.height, float(rate) if rate else None,
                             self.stream.frames or None, duration, ctx.name)

    def __enter__(self) -> "ClipReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for thing in (getattr(self, "container", None), self._file):
            if thing is not None:
                thing.close()

    def expected(self, rate: float) -> int | None:
        """About how many frames sampling at ``rate`` gives (for a progress bar), None if unknown."""
        if self.info.duration_s:
            n = math.ceil(self.info.duration_s * rate - 1e-6)
            return min(n, self.info.frames) if self.info.frames else n
        return self.info.frames

    def frames(self, rate: float) -> Iterator[Frame]:
        """The frames sampled at ``rate`` frames per second (module docstring), one at a time.

        A clip that is cut short or damaged part-way ends at its last good frame: :attr:`problem` says
        after how many frames and why.

        Raises:
            VideoError: not a single frame could be decoded (names the file).
        """
        origin, next_bucket = None, 0
        for frame in self._decoded():
            index = self.decoded
            self.decoded += 1
            t = frame.time if frame.time is not None else index / (self.info.fps or MAX_FPS)
            origin = t if origin is None else origin
            bucket = math.floor((t - origin) * rate + 1e-3)   # + 1e-3: k / fps * fps may round to k - epsilon
            if bucket < next_bucket:
                continue
            next_bucket = bucket + 1
            yield Frame(index, round(t - origin, 4), frame.to_image())
        if not self.decoded:
            raise VideoError(f"{self.uri}: no frame could be decoded{': ' + self.problem if self.problem else ''}")

    def _decoded(self):
        """The stream's frames in presentation order; on a damaged or cut packet, the frames still in the
        decoder, then the end (:attr:`problem` says why)."""
        import av

        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)   # the last one is empty: decoding it flushes the decoder
            except StopIteration:
                break
            except (av.FFmpegError, OSError, ValueError) as e:
                self.problem = f"the file is cut short or damaged after {self.decoded} decoded frame(s): {_reason(e)}"
                break
            try:
                yield from packet.decode()
            except (av.FFmpegError, OSError, ValueError) as e:   # a damaged packet: the next may decode
                self.problem = self.problem or f"a damaged packet after {self.decoded} decoded frame(s): {_reason(e)}"
        try:
            yield from self.stream.codec_context.decode(None)
        except (av.FFmpegError, OSError, ValueError):
            pass
        if self.info.frames and self.decoded < self.info.frames:
            self.problem = "; ".join(t for t in (f"only {self.decoded} of the {self.info.frames} frames the file "
                                                  "announces could be decoded (cut short?)", self.problem) if t)


def _reason(error: Exception) -> str:
    """FFmpeg's reason without the file name PyAV appends (the message names the file already)."""
    text = str(getattr(error, "strerror", None) or error)
    return text.split(": '")[0].strip() or type(error).__name__
