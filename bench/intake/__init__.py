"""Benchmark of the customer intake API (quotes, orders, photo uploads) on PostgreSQL and gunicorn.
Run: .venv/bin/python -m bench.intake.run; see bench/intake/README.md."""
