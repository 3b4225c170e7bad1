"""Pieces every dataset shares (image checking and reading, label matrices) and the synthetic demo data.
The dataset formats themselves are read by :mod:`pipeline.datasets`."""
