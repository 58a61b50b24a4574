"""A model is loaded once per Python worker and reused across batches, tasks and queries.

The proof is the workers' own load log (one line per load, with the worker's pid),
read from the stderr of a separate driver process.
"""

import json
import os
import subprocess
import sys

from demo import digits as digits_demo
from mxsql.udfs.logs import parse_loaded_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = r"""
import json, sys
from mxsql.registry.session import build_session
conf = json.loads(sys.argv[1])
spark = build_session(conf, master="local[2]", app_name="reuse")
df = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(sys.argv[2])
df.repartition(6).createOrReplaceTempView("digits")
for query in range(3):
    rows = spark.sql(
        "SELECT path, mx_classify(content) c, spark_partition_id() p FROM digits").collect()
    print(json.dumps({"rows": len(rows), "partitions": len({r.p for r in rows}),
                      "classified": sum(r.c is not None for r in rows)}), flush=True)
spark.stop()
"""


def test_model_loads_once_per_worker_across_three_queries(digits, tmp_path):
    prefix, paths = digits
    conf = {
        **digits_demo.model_conf(prefix),
        "spark.sql.execution.arrow.maxRecordsPerBatch": "16",
        "spark.mxsql.batchSize": "8",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    folder = os.path.dirname(os.path.dirname(paths[0]))
    env = {**os.environ, "MXSQL_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(conf), folder],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    queries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(queries) == 3
    for query in queries:
        assert query["rows"] == query["classified"] == len(paths)
        assert query["partitions"] >= 4
    loads = [load.pid for load in parse_loaded_models(done.stderr) if load.model == "default"]
    assert loads, done.stderr[-3000:]
    assert len(loads) == len(set(loads)), f"a worker loaded the model twice: {loads}"
    assert len(loads) <= 2, f"local[2] runs at most 2 Python workers at once, loads: {loads}"


WORKER_START = r"""
import json, sys
from demo import digits
from mxsql.udfs import config, models
spec = config.parse_settings(digits.model_conf(sys.argv[1])).model("default")
models.LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)
skipped = {name: name in sys.modules for name in ("sklearn", "scipy", "setuptools")}
import scipy, sklearn, setuptools  # still importable afterwards
print(json.dumps(skipped))
"""


def test_a_fresh_worker_loads_a_model_without_importing_scipy_sklearn_or_setuptools(digits):
    """Every fresh worker (one after each LIMIT query) imports MXNet; these are 45% of it."""
    out = subprocess.run(
        [sys.executable, "-c", WORKER_START, digits[0]],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out.splitlines()[-1]) == {"sklearn": False, "scipy": False,
                                                "setuptools": False}
