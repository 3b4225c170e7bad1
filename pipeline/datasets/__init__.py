"""Raw datasets -> the pipeline's Parquet tables (images, pairs, classes, rejects), one adapter per format.

- :mod:`pipeline.datasets.adapters`: the adapters by name (``prepare.dataset``) and ``prepare_dataset``.
- :mod:`pipeline.datasets.build`: what they share: image and box checks, ids, the val hold-out, class
  counts, loss thresholds.
- :mod:`pipeline.datasets.hico` (+ ``hico_anno``, ``hicodet``, ``hico_vocab``: HICO's files and facts),
  :mod:`pipeline.datasets.mpii`, :mod:`pipeline.datasets.table`: the adapters.
- :mod:`pipeline.datasets.files`: CSV / JSON Lines / list files, and ``AnnotationError``.
"""
