"""Label spaces, at the bottom layer: :class:`pipeline.classes.space.ClassSpace` (the classes of a dataset
or a model, used by datasets, model, inference and evaluation), HICO's vocabulary (``hico_vocab``) and the
COCO object labels detectors use (``coco``). Imports only :mod:`pipeline.choices`."""
