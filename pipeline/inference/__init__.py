"""The inference engine: every model run over images (predict, detect, score_regions, the ``defr`` command).

- :mod:`~pipeline.inference.engine`: the predictor protocol and the one pool. A predictor loads its model
  once (``__init__``) and scores a batch of decoded images with their rows (``__call__``); the pool
  decodes with :func:`pipeline.data.images.read_rgb`, turns unreadable images into reject rows with the
  reason, and runs the predictor in-process or on a Ray Data actor pool (one actor per GPU, or CPU actors).
- :mod:`~pipeline.inference.image_scores`: image-level logits (the predict stage, ``defr classify``).
- :mod:`~pipeline.inference.detections`: an MMDetection detector (the detect stage).
- :mod:`~pipeline.inference.regions`: masked regional scoring of human-object pairs, with boxes given or
  from a detector in the same actor, optionally drawn (the score_regions stage, ``defr detect``).
- :mod:`~pipeline.inference.inputs`, :mod:`~pipeline.inference.pictures`, :mod:`~pipeline.inference.hoi`:
  what ``defr`` adds: image arguments -> URIs, annotated pictures, results with class names.
"""
