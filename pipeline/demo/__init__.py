"""DEMO ONLY: synthetic datasets in the real file formats (HICO / HICO-DET: ``scenes``; MPII and the
``table`` adapter: ``activities``; any size in parallel for ``bench scale``: ``large``)."""
