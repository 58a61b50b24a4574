"""Checkpoints where MXNet cannot be imported (Python 3.12+): engine=onnxruntime reads and
checks them from the files alone; engine=mxnet and precision=int8 say what to do.

MXNet is installed here: a shim (``sys.modules['mxnet'] = None``) makes its import fail
in a fresh process that loads the model as a worker would. The last tests run mxsql for
real where MXNet cannot install: in .venv-py313, a Python 3.13 virtualenv with what
`pip install .` resolves there (`make test` makes it with `.ci/setup py313`), against
references MXNet makes here.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bench.python313 import PY313, env_313, install_work_tree
from demo import digits as digits_demo
from demo import zoo
from tests import worker_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK_MXNET = "import sys; sys.modules['mxnet'] = None\n"  # import mxnet raises ImportError


def _load_without_mxnet(conf: dict) -> str:
    out, err = worker_load.load(conf, shim=BLOCK_MXNET)
    return out + err


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


# Python 3.13, where MXNet cannot install: .venv-py313. Its tests are slow-marked because
# `make quick` does not make that virtualenv (`make test` does).
@pytest.fixture(scope="module")
def python313():
    """.venv-py313's Python, holding this tree's mxsql (installed again, without
    dependencies, so that it runs the code under test) and no MXNet."""
    if not os.path.exists(PY313):
        pytest.fail(f"{PY313} does not exist: `make test` makes it (or `bash .ci/setup py313`; "
                    "it needs pyenv's Python 3.13)")
    install_work_tree()
    probe = subprocess.run(
        [PY313, "-c", "import importlib.util, json, sys, numpy, onnx, onnxruntime, pyspark\n"
                      "print(json.dumps([sys.version_info[:2], numpy.__version__[:2], "
                      "pyspark.__version__, importlib.util.find_spec('mxnet') is None]))"],
        capture_output=True, text=True, env=env_313(), cwd="/")
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [[3, 13], "2.", "4.3.0", True], probe.stdout
    return PY313


@pytest.mark.slow
def test_converter_tests_pass_on_python313_skipping_only_mxnet_references(python313):
    """The converter's and the params reader's tests in .venv-py313: those that need MXNet
    for a reference skip there, because it cannot be imported; the rest must pass."""
    done = subprocess.run(
        [python313, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_onnx_export.py", "tests/test_mxparams.py"],
        capture_output=True, text=True, cwd=ROOT, env=env_313(), timeout=600)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0, summary
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips, "no test needing MXNet skipped: is MXNet importable in .venv-py313?"
    assert all("could not import 'mxnet'" in line for line in skips), skips


DRIVER_313 = r"""
import importlib.util, json, sys
from mxsql.registry.session import build_session
spark = build_session(json.loads(sys.argv[1]), master="local[2]", app_name="python313")
spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(sys.argv[2]) \
    .repartition(2).createOrReplaceTempView("digits")
worker = spark.sparkContext.parallelize([0], 1).map(lambda _: [
    list(sys.version_info[:2]), importlib.util.find_spec("mxnet") is None]).collect()[0]
result = {"driver": [list(sys.version_info[:2]), importlib.util.find_spec("mxnet") is None],
          "worker": worker}
for name, query in json.loads(sys.argv[3]).items():
    result[name] = {r.path: [[e.class_index, e.probability] for e in r.k]
                    for r in spark.sql(query).collect()}
print(json.dumps(result))
spark.stop()
"""

# name: query over `digits`, the held-out images; the same on both sides.
QUERIES_313 = {
    "digits": "SELECT path, mx_top_k(content, 10) AS k FROM digits",
    "resnet18": "SELECT path, mx_top_k(content, 1000, 'resnet18') AS k "
                "FROM (SELECT * FROM digits ORDER BY path LIMIT 16)",
}


def _top_k(spark, query: str) -> dict:
    return {r.path: [[e.class_index, e.probability] for e in r.k]
            for r in spark.sql(query).collect()}


def _distribution(top_k: list) -> np.ndarray:
    p = np.zeros(len(top_k))
    for class_index, probability in top_k:
        p[class_index] = probability
    return p


def _assert_agree(ours: dict, mxnet: dict) -> None:
    """The same images, each with MXNet's top class, every probability within 1e-4
    (the queries ask for every class)."""
    assert ours.keys() == mxnet.keys()
    for path, want in mxnet.items():
        got = ours[path]
        assert got[0][0] == want[0][0], path
        assert np.abs(_distribution(got) - _distribution(want)).max() < 1e-4, path


@pytest.mark.slow
def test_digits_through_sql_on_python313_agree_with_mxnet_fp32(python313, spark, digits,
                                                                digits_table, resnet18,
                                                                tmp_path):
    """The demo's digits model through mx_classify's SQL in a Python 3.13 driver and
    workers with no MXNet (engine=onnxruntime, converted by mxsql): every held-out digit
    gets MXNet FP32's class and probabilities; ResNet-18 (the ops of the model zoo) too,
    on 16 of them."""
    prefix, paths = digits
    conf = {**digits_demo.model_conf(prefix), **zoo.model_conf(resnet18),
            "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.model.resnet18.engine": "onnxruntime",
            "spark.mxsql.cacheDir": str(tmp_path / "cache"),
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    folder = os.path.dirname(os.path.dirname(paths[0]))
    done = subprocess.run([python313, "-c", DRIVER_313, json.dumps(conf), folder,
                           json.dumps(QUERIES_313)],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=600,
                          env=env_313(MXSQL_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["driver"] == result["worker"] == [[3, 13], True]
    assert len(result["digits"]) == len(paths)
    assert len(result["resnet18"]) == 16
    for name, query in QUERIES_313.items():  # over digits_table's view, `digits`
        _assert_agree(result[name], _top_k(spark, query))
