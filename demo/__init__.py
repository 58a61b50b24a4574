"""Real models and image tables for the demo, the tests and the benchmark.

Not installed with the package: everything here builds data on this machine, offline.
"""
