"""The ``defr`` command (entry point ``pipeline.cli:main``): a trained model on your own photos and any
model's HICO-DET results through the official evaluation. Top layer of the library: it may import every
other package of ``pipeline`` and none imports it."""
from pipeline.cli.commands import main

__all__ = ["main"]
