# The README's commands. Each installs what it needs first (.ci/setup).
PY := .venv/bin/python

.PHONY: demo test quick bench

.venv/.installed: setup.py .ci/setup
	bash .ci/setup

# Build a digits model and an image table, classify them through SQL.
demo: .venv/.installed
	$(PY) -m demo

# Every test, slow cluster and fault tests included.
test: .venv/.installed
	$(PY) -m pytest -q

# Daily work: everything but the slow tests.
quick: .venv/.installed
	$(PY) -m pytest -q -m "not slow"

# The benchmark (~50 min on 2 cores): writes bench/RESULTS.md and bench/results.png.
bench: .venv/.installed
	$(PY) -m bench
