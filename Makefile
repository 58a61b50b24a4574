# The README's commands. Each installs what it needs first (.ci/setup).
PY := .venv/bin/python

.PHONY: demo test quick bench docs

.venv/.installed: setup.py .ci/setup
	bash .ci/setup

# Python 3.13 without MXNet, where tests/test_without_mxnet.py runs mxsql (needs pyenv's 3.13).
.venv-py313/.installed: setup.py .ci/setup
	bash .ci/setup py313

# Build a digits model and an image table, classify them through SQL.
demo: .venv/.installed
	$(PY) -m demo

# Every test, slow cluster and fault tests included, and the no-MXNet ones on Python 3.13.
test: .venv/.installed .venv-py313/.installed
	$(PY) -m pytest -q --durations=30

# Daily work: everything but the slow tests.
quick: .venv/.installed
	$(PY) -m pytest -q -m "not slow"

# The benchmark (~50 min on 2 cores): writes bench/RESULTS.md and bench/results.png.
bench: .venv/.installed
	$(PY) -m bench

# After a change to a key table (udfs/config.py, udfs/s3/options.py): rewrite the key tables
# of README.md and the key block of spark-defaults.conf.
docs: .venv/.installed
	$(PY) -c "from mxsql.registry.config import write_documents; write_documents('.')"
