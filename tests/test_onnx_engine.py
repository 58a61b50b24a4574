"""The optional ONNX Runtime engine: same results as MXNet, one conversion per machine.

A model with ``spark.mxsql.model.NAME.engine=onnxruntime`` is the same checkpoint converted
by mxsql's own converter (udfs/onnx_export.py) into spark.mxsql.cacheDir and run by ONNX
Runtime. Worker logs (one ``converted model`` line per conversion) are read from a separate
driver's stderr.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from demo import digits as digits_demo
from demo import zoo
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.logs import parse_loaded_models
from tests import worker_load

CONVERTED = re.compile(r"converted model '(\S+)' to ONNX in [\d.]+ s: (\S+) \(pid (\d+)\)")
ENGINE = {"spark.mxsql.model.digits_onnx.engine": "onnxruntime",
          "spark.mxsql.model.resnet18_onnx.engine": "onnxruntime"}


@pytest.fixture(scope="module")
def onnx_models(mx_conf_while, digits, resnet18):
    """'digits_onnx' and 'resnet18_onnx': the session's two models on ONNX Runtime."""
    with mx_conf_while({**digits_demo.model_conf(digits[0], "digits_onnx"),
                        **zoo.model_conf(resnet18, "resnet18_onnx"), **ENGINE}):
        yield


def _distributions(rows, column: str, classes: int) -> dict:
    out = {}
    for row in rows:
        p = np.zeros(classes)
        for entry in row[column]:
            p[entry.class_index] = entry.probability
        out[row.path] = p
    return out


def _assert_same_results(spark, source: str, mxnet_model: str, onnx_model: str, classes: int):
    rows = spark.sql(
        f"SELECT path, mx_top_k(content, {classes}, '{mxnet_model}') AS m, "
        f"mx_top_k(content, {classes}, '{onnx_model}') AS o FROM {source}").collect()
    assert rows
    mxnet, onnx = _distributions(rows, "m", classes), _distributions(rows, "o", classes)
    for path, p in mxnet.items():
        assert np.abs(p - onnx[path]).max() < 1e-4, path
        assert p.sum() == pytest.approx(1.0, abs=1e-4)


def test_digits_through_sql_equal_mxnet_within_1e_4(spark, digits_table, onnx_models):
    _assert_same_results(spark, digits_table, "default", "digits_onnx", classes=10)


def test_resnet18_through_sql_equals_mxnet_within_1e_4(spark, digits_table, onnx_models):
    source = f"(SELECT * FROM {digits_table} ORDER BY path LIMIT 16)"
    _assert_same_results(spark, source, "resnet18", "resnet18_onnx", classes=1000)


def test_bad_engine_value_is_refused_at_registration(mx_conf):
    with pytest.raises(ConfigError, match=re.escape(
            "spark.mxsql.model.default.engine='tensorrt': must be one of mxnet, onnxruntime")):
        mx_conf({"spark.mxsql.model.default.engine": "tensorrt"})


def test_misspelt_engine_key_suggests_engine():
    with pytest.raises(ConfigError,
                       match=r"unknown model setting 'engin'; did you mean 'engine'\?"):
        parse_settings({"spark.mxsql.model.x.uri": "/m", "spark.mxsql.model.x.engine": "mxnet",
                        "spark.mxsql.model.x.engin": "onnxruntime"})


def test_engine_defaults_to_mxnet():
    assert parse_settings({"spark.mxsql.model.x.uri": "/m"}).model("x").engine == "mxnet"


def test_missing_onnxruntime_names_the_key_and_the_fix(digits, tmp_path):
    """onnxruntime is installed here: a shim makes its import fail, as where it is not."""
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.cacheDir": str(tmp_path)}
    out, err = worker_load.load(conf, shim="import sys; sys.modules['onnxruntime'] = None\n")
    assert out.startswith("ModelLoadError: spark.mxsql.model.default.engine=onnxruntime but "
                          "onnxruntime cannot be imported"), out + err
    assert "pip install 'mxsql[onnx]'" in out
    assert not glob.glob(str(tmp_path / "*.onnx")), "converted although it cannot run"


def test_concurrent_processes_convert_once(resnet18, tmp_path):
    conf = {**zoo.model_conf(resnet18, "default"),
            "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.cacheDir": str(tmp_path)}
    procs = [worker_load.start_load(conf) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    for out, err in results:
        assert out.strip() == "loaded 1000", err[-2000:]
    conversions = CONVERTED.findall("".join(err for _, err in results))
    assert len(conversions) == 1, conversions
    assert glob.glob(str(tmp_path / "resnet-18-*.onnx")) == [conversions[0][1]]


def test_a_load_converts_once_and_a_warm_cache_writes_nothing(digits, tmp_path, monkeypatch):
    """The conversion that reads the network's output shape is the one the engine saves."""
    from mxsql.udfs import onnx_export
    from mxsql.udfs.models import LoadedModel

    calls = []
    real = onnx_export.convert
    monkeypatch.setattr(onnx_export, "convert",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    settings = parse_settings({**digits_demo.model_conf(digits[0]),
                               "spark.mxsql.model.default.engine": "onnxruntime",
                               "spark.mxsql.cacheDir": str(tmp_path)})
    spec = settings.model("default")

    def load():
        return LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri,
                           settings=settings)

    cold = load()
    assert len(calls) == 1
    (converted,) = glob.glob(str(tmp_path / "digits-*.onnx"))
    stamp = os.stat(converted).st_mtime_ns
    warm = load()
    assert len(calls) == 2
    assert glob.glob(str(tmp_path / "digits-*.onnx")) == [converted]
    assert os.stat(converted).st_mtime_ns == stamp
    pixels = np.random.RandomState(0).randint(0, 256, (4, 16, 16, 1)).astype(np.uint8)
    np.testing.assert_array_equal(cold.predict(pixels, 4), warm.predict(pixels, 4))


def test_changed_checkpoint_is_converted_again(digits, tmp_path):
    import mxnet as mx

    from mxsql.udfs.models import LoadedModel

    model_dir = os.path.dirname(digits[0])
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    prefix = str(copy / "digits")
    cache = tmp_path / "cache"
    settings = parse_settings({**digits_demo.model_conf(prefix),
                               "spark.mxsql.model.default.engine": "onnxruntime",
                               "spark.mxsql.cacheDir": str(cache)})
    spec = settings.model("default")

    def convert():
        return LoadedModel(spec, spec.symbol_uri, spec.params_uri, str(copy / "synset.txt"),
                           settings=settings)

    first = convert()
    params = mx.nd.load(spec.params_uri)
    bias = params["arg:fc2_bias"].asnumpy()
    bias[3] += 50.0  # one class only: a shift of every logit would change no probability
    params["arg:fc2_bias"] = mx.nd.array(bias)
    mx.nd.save(spec.params_uri, params)
    second = convert()
    files = sorted(glob.glob(str(cache / "digits-*.onnx")))
    assert len(files) == 2
    pixels = np.full((1, 16, 16, 1), 128, np.uint8)
    assert first.predict(pixels, 1).argmax() != 3
    assert second.predict(pixels, 1).argmax() == 3


DRIVER = r"""
import json, sys
from mxsql.registry.session import build_session
spark = build_session(json.loads(sys.argv[1]), master="local[2]", app_name="onnx-once")
spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(sys.argv[2]) \
    .repartition(4).createOrReplaceTempView("digits")
rows = spark.sql("SELECT path, mx_classify(content) c FROM digits").collect()
print(json.dumps({"rows": len(rows), "classified": sum(r.c is not None for r in rows)}))
spark.stop()
"""


@pytest.mark.slow
def test_workers_convert_once_and_a_second_session_reuses_the_file(digits, tmp_path):
    prefix, paths = digits
    conf = {**digits_demo.model_conf(prefix), "spark.mxsql.model.default.engine": "onnxruntime",
            "spark.mxsql.cacheDir": str(tmp_path / "cache"),
            "spark.sql.execution.arrow.maxRecordsPerBatch": "16",
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    folder = os.path.dirname(os.path.dirname(paths[0]))
    env = {**os.environ, "MXSQL_HOME": str(tmp_path)}

    def session():
        done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(conf), folder],
                              capture_output=True, text=True, env=env, cwd=str(tmp_path),
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["rows"] == result["classified"] == len(paths)
        loads = [load for load in parse_loaded_models(done.stderr) if load.model == "default"]
        assert loads, done.stderr[-3000:]
        return CONVERTED.findall(done.stderr)

    first = session()
    assert len(first) == 1, first
    converted = first[0][1]
    stamp = os.stat(converted).st_mtime_ns
    assert session() == []
    assert os.stat(converted).st_mtime_ns == stamp
