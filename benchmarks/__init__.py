"""Benchmarks for django-mailer-jobs: ``python benchmarks/run.py [--quick]``."""
