"""Runs every benchmark module (or the ones named): python -m bench [prepare embed_text ...].

``scale`` (hours: every stage up to HICO's size) runs only when named: python -m bench scale.
"""
import importlib
import pkgutil
import sys
import time

import bench

ONLY_WHEN_NAMED = {"scale"}  # hours on a 2-core machine


def main(argv: list[str]) -> None:
    names = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(bench.__path__)
                   if m.name.startswith("bench_"))
    # Options after one name go to that benchmark: python -m bench gpu --device cpu --tiny
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    argv, options = argv[:first_option], argv[first_option:]
    if options and len(argv) != 1:
        sys.exit(f"options {options} need exactly one benchmark name before them (e.g. python -m bench gpu --tiny)")
    chosen = argv or [n for n in names if n not in ONLY_WHEN_NAMED]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; available: {names}")
    for name in chosen:
        print(f"\n===== bench {name} =====", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        module.main(options) if options else module.main()
        print(f"===== {name}: {time.perf_counter() - start:.1f} s =====", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
