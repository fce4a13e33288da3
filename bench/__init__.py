"""Benchmarks. ``python -m bench``: latency and throughput of the command core under
concurrent users (``bench/__main__.py``, ``bench/workload.py``, ``bench/report.py``)."""
