"""One thin module per DVC stage: read params, call ``pipeline``, write artifacts atomically."""
