"""Raw datasets -> the pipeline's Parquet tables (images, pairs, classes, rejects), one adapter per format.

- :mod:`pipeline.datasets.adapters`: the adapters by name (``prepare.dataset``) and ``prepare_dataset``.
- :mod:`pipeline.datasets.build`: what they share: image and box checks, ids, the val hold-out, class
  counts, loss thresholds.
- :mod:`pipeline.datasets.hico` (+ ``hico_anno``, ``hicodet``: HICO's files; its vocabulary is
  :mod:`pipeline.classes.hico_vocab`),
  :mod:`pipeline.datasets.mpii`, :mod:`pipeline.datasets.table`: the adapters.
- :mod:`pipeline.datasets.files`: CSV / JSON Lines / list files, and ``AnnotationError``.
- :mod:`pipeline.datasets.images`, :mod:`pipeline.datasets.labels`: decoding and checking images; label
  matrices from the images table.
- :mod:`pipeline.datasets.splits`: one split of the images table (the only split filter).
"""
