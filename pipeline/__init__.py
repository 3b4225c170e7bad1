"""DEFR: detection-free human-object interaction recognition, as an importable library.

Nothing in this package reads params.yaml or imports DVC; the stages in ``stages/`` do that.
"""

__version__ = "0.1.0"
