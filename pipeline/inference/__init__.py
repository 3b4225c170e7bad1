"""The inference engine: every model run over images (predict, detect, score_regions, the ``defr`` command).

- :mod:`~pipeline.inference.engine`: the predictor protocol and the one pool. A predictor loads its model
  once (``__init__``) and scores a batch of decoded images with their rows (``__call__``); the pool
  decodes with :func:`pipeline.datasets.images.read_rgb`, turns unreadable images into reject rows with the
  reason, and runs the predictor in-process or on a Ray Data actor pool (one actor per GPU, or CPU actors).
- :mod:`~pipeline.inference.image_predictor`: image-level logits (the predict stage, ``defr classify``).
- :mod:`~pipeline.inference.detector_predictor`: an MMDetection detector (the detect stage).
- :mod:`~pipeline.inference.pair_predictor`: masked regional scoring of human-object pairs, with boxes given or
  from a detector in the same actor, optionally drawn (the score_regions stage, ``defr detect``).
- :mod:`~pipeline.inference.pictures`, :mod:`~pipeline.inference.attention_maps`: the annotated picture
  and the attention figure, drawn inside the actor from the pass that scored.
- :mod:`~pipeline.inference.predict_split`, :mod:`~pipeline.inference.detect_split`,
  :mod:`~pipeline.inference.score_split`: the work of the predict, detect and score_regions stages on one
  split (each returns a :class:`~pipeline.inference.engine.SplitResult`).
The ``defr`` command's own parts (image arguments, output folders, results with class names) are in
:mod:`pipeline.cli`, the layer above.
"""
