"""Benchmarks (not tests): `make bench` or `python -m bench [name ...]`.

Each ``bench/bench_<name>.py`` has ``main()`` that prints its figures, each as a ratio against a baseline
measured in the same run.
"""
