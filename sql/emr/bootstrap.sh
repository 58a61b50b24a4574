#!/bin/bash
# EMR bootstrap action: install mxsql on every node (primary, core and task) before Spark
# starts, so executors import it from the interpreter they run: "installed on every node".
#
#   Arguments: PACKAGE [PIP_OPTION...]
#     PACKAGE  what pip installs: a requirement ("mxsql==0.1.0"), or the s3:// URI of a
#              wheel (mxsql-0.1.0-py3-none-any.whl), copied to the node first
#
# It makes the virtualenv /opt/mxsql (configurations.json points PYSPARK_PYTHON at
# /opt/mxsql/bin/python) and the model cache /mnt/mxsql-cache, one per node, shared by
# every executor there (spark.mxsql.cacheDir). Runs as the hadoop user; sudo for /opt.
set -euo pipefail

package="${1:?usage: bootstrap.sh PACKAGE [PIP_OPTION...]: mxsql==VERSION or s3://BUCKET/mxsql-VERSION-py3-none-any.whl}"
shift
venv=/opt/mxsql
cache=/mnt/mxsql-cache

# mxsql supports Python 3.9 to 3.11 (mxnet 1.9.1 wheels; numpy < 1.24).
python3 - <<'PY'
import sys
if not (3, 9) <= sys.version_info[:2] <= (3, 11):
    sys.exit(f"mxsql needs Python 3.9-3.11 on every node; python3 here is {sys.version.split()[0]}")
PY

if [[ "$package" == s3://* ]]; then
    wheel="/tmp/$(basename "$package")"
    aws s3 cp --only-show-errors "$package" "$wheel"
    package="$wheel"
fi

sudo python3 -m venv "$venv"
sudo "$venv/bin/python" -m pip install --quiet --upgrade pip
sudo "$venv/bin/python" -m pip install --quiet "$package" "$@"
"$venv/bin/python" -c "import mxsql.udfs, mxsql.registry"

# One artifact cache per machine: executors of every user (YARN containers run as yarn)
# share it, and its file lock makes one download per node.
sudo mkdir -p "$cache"
sudo chmod 1777 "$cache"
