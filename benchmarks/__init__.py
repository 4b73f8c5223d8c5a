"""The sessiondb benchmark: one seeded workload, run against every contender and backend.

Run ``python -m benchmarks --help``; ``benchmarks/README.md`` explains the workload and the
report. The workload itself is defined in ``shared/bench/workload.md``.
"""
