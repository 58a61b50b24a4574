"""The mxsql benchmark: images per second of mx_classify against its limit and the other ways.

Run ``python -m bench`` (or ``make bench``) from the repository root; see bench/RESULTS.md.
"""
