"""Benchmarks: ``python -m bench.<name>`` (``--quick`` under a minute, ``--json`` prints one
JSON object as the last line). Each reports ratios against a baseline measured in the
same run; figures are kept in ``bench/README.md``.
"""
