"""Benchmarks that drive a live vecstore server over HTTP on 127.0.0.1.

Entry points: ``python -m benchmarks.run_core`` (see ``benchmarks/README.md``).
"""
