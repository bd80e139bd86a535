"""Benchmark of lab.production.raster against a naive Pillow path; run with `python -m bench.raster.run`.
Not part of the test suite: it takes a minute and its figures belong in bench/raster/README.md."""
