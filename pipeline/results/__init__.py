"""Other models' HICO-DET / HICO results in their own formats, for ``defr evaluate`` (the official numbers
with the project's evaluators, :mod:`pipeline.metrics`).

- :mod:`pipeline.results.testset`: the HICO-DET test annotations (``instances_test2015.json`` / ``anno_bbox.mat``).
- :mod:`pipeline.results.formats`: format detection and dispatch; one module per format:
  :mod:`~pipeline.results.mat_cache` (+ :mod:`~pipeline.results.mat_cells`), :mod:`~pipeline.results.detr_lists`,
  :mod:`~pipeline.results.own_tables`.
- :mod:`pipeline.results.records`: checked detections and reject rows.
- :mod:`pipeline.results.image_scores`: HICO image-level scores.
- :mod:`pipeline.results.vcoco`: V-COCO results (the official list of per-person dicts, a plain table), and
  that list written from scored pairs.
- :mod:`pipeline.results.published`: published numbers for ``--compare``.

Nothing here imports torch or Ray.
"""
from pipeline.results.formats import FORMATS, ReadOptions, detect_format, read_detections
from pipeline.results.records import Detections
from pipeline.results.testset import HicoDetTestSet, read_test_set

__all__ = ["FORMATS", "ReadOptions", "detect_format", "read_detections", "Detections", "HicoDetTestSet",
           "read_test_set"]
