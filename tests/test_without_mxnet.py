"""Checkpoints where MXNet cannot be imported (Python 3.12+): engine=onnxruntime reads and
checks them from the files alone; engine=mxnet and precision=int8 say what to do.

MXNet is installed here: a shim (``sys.modules['mxnet'] = None``) makes its import fail
in a fresh process that loads the model as a worker would.
"""

import json
import os
import subprocess
import sys

import pytest

from demo import digits as digits_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD = r"""
import json, sys
sys.modules["mxnet"] = None  # import mxnet raises ImportError, as where it is absent
from mxsql.udfs import models
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import ModelLoadError
settings = parse_settings(json.loads(sys.argv[1]))
try:
    model = models.get_model(settings.model("default"), settings)
except ModelLoadError as e:
    print("ModelLoadError:", e)
else:
    print("loaded", model.num_classes)
"""


def _load_without_mxnet(conf: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(conf)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc.stdout + proc.stderr


def test_onnxruntime_engine_loads_without_mxnet(digits, tmp_path):
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.cacheDir": str(tmp_path),
            "spark.mxsql.model.default.engine": "onnxruntime"}
    assert _load_without_mxnet(conf).startswith("loaded 10")


def test_label_count_is_checked_without_mxnet(digits, tmp_path):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.cacheDir": str(tmp_path),
            "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.model.default.labels": str(labels)}
    out = _load_without_mxnet(conf)
    assert out.startswith(f"ModelLoadError: spark.mxsql.model.default.labels: 3 labels in "
                          f"{labels} but the network outputs 10 classes"), out


def test_engine_mxnet_without_mxnet_says_what_to_install_or_use(digits, tmp_path):
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.cacheDir": str(tmp_path)}
    out = _load_without_mxnet(conf)
    assert out.startswith("ModelLoadError: spark.mxsql.model.default.engine=mxnet: MXNet "
                          "cannot be imported"), out
    assert "pip install mxnet==1.9.1" in out
    assert "spark.mxsql.model.default.engine=onnxruntime" in out


def test_int8_without_mxnet_names_the_precision(digits, tmp_path):
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.cacheDir": str(tmp_path),
            "spark.mxsql.model.default.precision": "int8",
            "spark.mxsql.model.default.calibration": str(tmp_path)}
    out = _load_without_mxnet(conf)
    assert "spark.mxsql.model.default.precision=int8 runs only through MXNet" in out, out
    assert "spark.mxsql.model.default.engine=onnxruntime" in out


DRIVER = r"""
import importlib.util, json, sys
from mxsql.registry.session import build_session
spark = build_session(json.loads(sys.argv[1]), master="local[2]", app_name="no-mxnet")
spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(sys.argv[2]) \
    .repartition(2).createOrReplaceTempView("digits")
where = spark.sparkContext.parallelize([0], 1) \
    .map(lambda _: importlib.util.find_spec("mxnet").origin).collect()[0]
rows = spark.sql("SELECT path, mx_classify(content) c FROM digits").collect()
print(json.dumps({"mxnet": where, "classes": {r.path: r.c.class_index for r in rows}}))
spark.stop()
"""


@pytest.mark.slow
def test_digits_through_sql_with_mxnet_blocked_agree_with_mxnet(spark, digits, digits_table,
                                                                   tmp_path):
    """Driver and workers import a ``mxnet`` package that raises ImportError (first on
    PYTHONPATH); engine=onnxruntime classifies every held-out digit as MXNet FP32 does."""
    prefix, paths = digits
    blocker = tmp_path / "blocker"
    (blocker / "mxnet").mkdir(parents=True)
    (blocker / "mxnet" / "__init__.py").write_text("raise ImportError('mxnet blocked')\n")
    conf = {**digits_demo.model_conf(prefix), "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.cacheDir": str(tmp_path / "cache"),
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "MXSQL_HOME": str(tmp_path), "PYTHONPATH": path}
    folder = os.path.dirname(os.path.dirname(paths[0]))
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(conf), folder],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mxnet"] == str(blocker / "mxnet" / "__init__.py")
    mxnet = {r.path: r.c.class_index for r in spark.sql(
        f"SELECT path, mx_classify(content) c FROM {digits_table}").collect()}
    assert len(mxnet) == len(paths)
    assert result["classes"] == mxnet
