"""Video clips on the inference engine: frames decoded as a stream and sampled (``frames.py``), linked and
smoothed pairs (``tracks.py``), the annotated .mp4 (``mp4.py``) and the run over a clip (``clips.py``:
:func:`~pipeline.video.clips.detect_clip`, for ``defr detect`` and ``defr serve``)."""
