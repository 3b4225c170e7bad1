"""The annotated video: RGB frames encoded into an .mp4 as they come (H.264 where FFmpeg has an H.264
encoder, else MPEG-4 Part 2, the ``mp4v`` of OpenCV), at the sampled rate."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from PIL import Image

# Encoders in order of preference: libx264 (H.264: plays in every browser), then FFmpeg's own MPEG-4.
CODECS = ("libx264", "mpeg4")


def encoder_name() -> str:
    """The first of :data:`CODECS` this FFmpeg can encode with."""
    import av

    for name in CODECS:
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except (av.FFmpegError, ValueError):
                continue
    raise ValueError("FFmpeg (PyAV) has neither an H.264 (libx264) nor an MPEG-4 encoder: cannot write the video")


class Mp4Writer:
    """Writes frames to ``path`` at ``rate`` frames per second (a context manager: closing flushes the
    encoder and writes the index at the start of the file, so that a browser plays it while loading).

    Frames of another size are scaled to the first frame's; sizes are made even (H.264's 4:2:0 needs it).
    """

    def __init__(self, path: str | Path, rate: float):
        import av

        self.path, self.codec = Path(path), encoder_name()
        self.rate = Fraction(rate).limit_denominator(1001)
        self.container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        self.stream = None
        self.frames = 0

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, image: Image.Image) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.width, self.stream.height = max(2, image.width // 2 * 2), max(2, image.height // 2 * 2)
            self.stream.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                # ultrafast: a third of veryfast's CPU time at 720p (7 ms a frame here), files about 2x larger
                self.stream.options = {"preset": "ultrafast", "crf": "23"}
            else:
                self.stream.bit_rate = 4_000_000
        frame = av.VideoFrame.from_image(image.convert("RGB")).reformat(
            width=self.stream.width, height=self.stream.height, format="yuv420p")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        try:
            if self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None
