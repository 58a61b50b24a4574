"""The SQL functions through a real SparkSession: right answers, real NULLs, clear errors."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pyspark.errors import PythonException
from pyspark.sql import functions as F

from demo import digits as digits_demo
from tests import imagekit


def _path(uri):
    return uri[len("file:"):] if uri.startswith("file:") else uri


def _direct_digits(prefix, paths):
    """Probabilities from MXNet called directly, with preprocessing written independently."""
    import mxnet as mx

    x = np.stack([
        np.asarray(Image.open(p).convert("L").resize((16, 16), Image.BILINEAR), np.float32)
        for p in paths
    ])[:, None] / 255.0
    sym, args, auxs = mx.model.load_checkpoint(prefix, 0)
    module = mx.mod.Module(sym, label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", x.shape)], for_training=False)
    module.set_params(args, auxs, allow_missing=True)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def test_sql_predictions_equal_mxnet_called_directly(spark, digits, digits_table):
    prefix, paths = digits
    rows = spark.sql(
        "SELECT path, mx_classify(content) AS c, mx_top_k(content, 10) AS k FROM digits"
    ).collect()
    by_path = {_path(r.path): r for r in rows}
    paths = sorted(by_path)
    expected = _direct_digits(prefix, paths)
    labels = digits_demo.NAMES
    for path, probs in zip(paths, expected):
        row = by_path[path]
        assert row.c.label == labels[int(probs.argmax())]
        assert row.c.class_index == int(probs.argmax())
        assert row.c.probability == pytest.approx(float(probs.max()), abs=1e-5)
        full = {item.class_index: item.probability for item in row.k}
        assert np.allclose([full[i] for i in range(10)], probs, atol=1e-5)


def test_digits_are_classified_accurately(spark, digits_table):
    rows = spark.sql("SELECT path, mx_classify(content).label AS label FROM digits").collect()
    right = sum(r.label == digits_demo.label_of(_path(r.path)) for r in rows)
    assert len(rows) == 360 and right / len(rows) > 0.9


def test_logits_of_a_gluon_export_become_probabilities(spark, resnet18, digits):
    import mxnet as mx

    paths = digits[1][:5]
    df = spark.createDataFrame([(p, open(p, "rb").read()) for p in paths], "path string, content binary")
    rows = df.selectExpr("path", "mx_top_k(content, 1000, 'resnet18') AS k").collect()
    net = mx.gluon.SymbolBlock.imports(resnet18 + "-symbol.json", ["data"], resnet18 + "-0000.params")
    x = np.stack([
        np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
        for p in paths
    ]).transpose(0, 3, 1, 2)
    expected = mx.nd.softmax(net(mx.nd.array(x))).asnumpy()
    for row, probs in zip(rows, expected):
        got = np.zeros(1000)
        for item in row.k:
            got[item.class_index] = item.probability
        assert np.allclose(got, probs, atol=1e-5)
        assert got.sum() == pytest.approx(1.0, abs=1e-6)
        assert row.k[0].label == f"class {row.k[0].class_index}", "WordNet ids are stripped"


def test_top_k_is_best_first_and_agrees_with_classify(spark, digits_table):
    rows = spark.sql(
        "SELECT c, k FROM (SELECT mx_classify(content) c, mx_top_k(content, 3) k FROM digits LIMIT 20)"
    ).collect()
    for row in rows:
        probs = [item.probability for item in row.k]
        assert len(row.k) == 3 and probs == sorted(probs, reverse=True)
        assert row.k[0].asDict() == row.c.asDict()


def test_top_k_beyond_the_classes_gives_every_class(spark, digits_table):
    (row,) = spark.sql("SELECT mx_top_k(content, 50) k FROM digits LIMIT 1").collect()
    assert len(row.k) == 10


def test_top_k_of_null_k_is_null_and_bad_k_fails(spark, digits_table):
    (row,) = spark.sql("SELECT mx_top_k(content, CAST(NULL AS INT)) k FROM digits LIMIT 1").collect()
    assert row.k is None
    with pytest.raises(PythonException,
                       match="ArgumentError: mx_top_k: k must be a positive integer, got 0"):
        spark.sql("SELECT mx_top_k(content, 0) FROM digits LIMIT 1").collect()


@pytest.fixture(scope="module")
def mixed_table(spark, digits):
    """Good digits beside every kind of bad input, as a temporary view `mixed`."""
    good = digits[1][:6]
    png = open(good[0], "rb").read()
    bad = {
        "null": None,
        "empty": b"",
        "not-an-image": b"GIF89a? no: plain text pretending",
        "truncated": imagekit.truncated(png),
        "corrupted": imagekit.corrupted_png(imagekit.encode(imagekit.gradient_rgb(), "PNG")),
        "bomb": imagekit.png_header_claiming(100_000, 100_000),
    }
    rows = [(p, open(p, "rb").read()) for p in good] + [(f"bad/{k}", v) for k, v in bad.items()]
    spark.createDataFrame(rows, "path string, content binary").repartition(3) \
        .createOrReplaceTempView("mixed")
    return good, bad


def test_bad_rows_are_null_with_a_reason_and_good_rows_are_right(spark, digits, mixed_table):
    good, bad = mixed_table
    expected = _direct_digits(digits[0], good).argmax(axis=1)
    rows = spark.sql("""
        SELECT path, c, c IS NULL AS missing, info.error AS error FROM (
          SELECT path, mx_classify(content) c, mx_image_info(content) info FROM mixed)
    """).collect()
    by_path = {r.path: r for r in rows}
    assert len(rows) == len(good) + len(bad)
    for path, index in zip(good, expected):
        assert by_path[path].c.label == digits_demo.NAMES[index]
        assert by_path[path].error is None
    reasons = {
        "null": "content is NULL", "empty": "content is empty",
        "not-an-image": "not an image", "truncated": "cannot decode PNG",
        "corrupted": "cannot decode PNG", "bomb": "over spark.mxsql.maxImagePixels",
    }
    for kind, reason in reasons.items():
        row = by_path[f"bad/{kind}"]
        assert row.missing and row.c is None, kind
        assert reason in row.error, (kind, row.error)


def test_bad_rows_in_top_k_are_null(spark, mixed_table):
    rows = spark.sql("SELECT path, mx_top_k(content, 2) k FROM mixed WHERE path LIKE 'bad/%'").collect()
    assert rows and all(r.k is None for r in rows)


def test_on_error_fail_names_the_reason_and_the_path(spark, mixed_table):
    spark.sql("SET spark.mxsql.onError=fail")
    try:
        with pytest.raises(PythonException, match=r"RowError: cannot classify image "
                                                  r"bad/[a-z-]+ with model 'default': "
                                                  r"[^\n]*spark\.mxsql\.onError=fail"):
            spark.sql("SELECT mx_classify(content, 'default', path) FROM mixed").collect()
    finally:
        spark.sql("SET spark.mxsql.onError=null")
    assert spark.sql("SELECT count(mx_classify(content)) n FROM mixed").first().n == 6


def test_on_error_fail_without_path_says_how_to_name_the_file(spark, mixed_table):
    spark.sql("SET spark.mxsql.onError=fail")
    try:
        with pytest.raises(PythonException, match=r"RowError: cannot classify an image \(pass "
                                                  r"its path as the fourth argument of "
                                                  r"mx_top_k to name the file\) with model"):
            spark.sql("SELECT mx_top_k(content, 2) FROM mixed").collect()
    finally:
        spark.sql("SET spark.mxsql.onError=null")


def test_set_of_a_model_source_is_refused_at_the_next_query(spark, digits_table):
    key = "spark.mxsql.model.default.uri"
    registered = spark.conf.get(key)
    spark.sql(f"SET {key}=/somewhere/else")
    try:
        with pytest.raises(PythonException,
                           match=f"ConfigError: {key}: /somewhere/else-symbol.json is outside "
                                 "spark.mxsql.model.allowedUris"):
            spark.sql("SELECT mx_classify(content) FROM digits LIMIT 1").collect()
    finally:
        spark.conf.set(key, registered)


def test_dataframe_api_calls_the_registered_functions(spark, digits):
    paths = digits[1][:3]
    df = spark.createDataFrame([(p, open(p, "rb").read()) for p in paths], "path string, content binary")
    rows = df.select("path", F.call_function("mx_classify", F.col("content")).alias("c")).collect()
    expected = _direct_digits(digits[0], paths).argmax(axis=1)
    assert [r.c.label for r in rows] == [digits_demo.NAMES[i] for i in expected]


def test_reading_fields_of_one_call_runs_the_network_once(spark, digits_table):
    (plan,) = spark.sql(
        "EXPLAIN SELECT c.label, c.probability FROM (SELECT mx_classify(content) c FROM digits)"
    ).first()
    assert plan.count("ArrowEvalPython") == 1 and plan.count("mx_classify(") == 1


def _one(spark, sql):
    return spark.sql(sql).collect()


@pytest.mark.parametrize("setting, message", [
    ({"spark.mxsql.model.missing.uri": "/no/such/model"},
     "ModelLoadError: spark.mxsql.model.missing.uri: file not found: "
     "/no/such/model-symbol.json"),
])
def test_missing_model_file_names_the_key(spark, mx_conf, digits_table, setting, message):
    mx_conf(setting)
    with pytest.raises(PythonException, match=message):
        _one(spark, "SELECT mx_classify(content, 'missing') FROM digits LIMIT 1")


def test_unknown_model_name_names_the_key(spark, digits_table):
    with pytest.raises(PythonException, match=r"ConfigError: unknown model 'defualt': set "
                                              r"spark\.mxsql\.model\.defualt\.uri.*"
                                              r"did you mean 'default'"):
        _one(spark, "SELECT mx_classify(content, 'defualt') FROM digits LIMIT 1")


def test_checksum_mismatch_names_the_key(spark, mx_conf, digits, digits_table):
    mx_conf({**digits_demo.model_conf(digits[0], "checked"),
             "spark.mxsql.model.checked.sha256.params": "0" * 64})
    with pytest.raises(PythonException, match=r"ModelLoadError: spark\.mxsql\.model\.checked"
                                              r"\.sha256\.params: checksum mismatch"):
        _one(spark, "SELECT mx_classify(content, 'checked') FROM digits LIMIT 1")


def test_right_checksums_load(spark, mx_conf, digits, digits_table):
    from mxsql.udfs.artifacts import sha256_of

    prefix = digits[0]
    mx_conf({**digits_demo.model_conf(prefix, "verified"),
             "spark.mxsql.model.verified.sha256.params": sha256_of(prefix + "-0000.params"),
             "spark.mxsql.model.verified.sha256.symbol": sha256_of(prefix + "-symbol.json")})
    assert _one(spark, "SELECT mx_classify(content, 'verified') c FROM digits LIMIT 1")[0].c is not None


def test_label_count_mismatch_names_the_key(spark, mx_conf, digits, tmp_path, digits_table):
    labels = tmp_path / "nine.txt"
    labels.write_text("".join(f"{n}\n" for n in digits_demo.NAMES[:9]))
    mx_conf({**digits_demo.model_conf(digits[0], "nine"),
             "spark.mxsql.model.nine.labels": str(labels)})
    with pytest.raises(PythonException, match=r"ModelLoadError: spark\.mxsql\.model\.nine"
                                              r"\.labels: 9 labels in .*nine\.txt but the "
                                              r"network outputs 10 classes"):
        _one(spark, "SELECT mx_classify(content, 'nine') FROM digits LIMIT 1")


def test_unreadable_labels_file_names_the_key(spark, mx_conf, digits, digits_table):
    mx_conf({**digits_demo.model_conf(digits[0], "binarylabels"),
             "spark.mxsql.model.binarylabels.labels": digits[0] + "-0000.params"})
    with pytest.raises(PythonException, match=r"ModelLoadError: spark\.mxsql\.model\.binarylabels"
                                              r"\.labels: cannot read .*-0000\.params as "
                                              r"UTF-8 text"):
        _one(spark, "SELECT mx_classify(content, 'binarylabels') FROM digits LIMIT 1")


def test_input_shape_the_network_rejects_names_the_key(spark, mx_conf, digits, digits_table):
    mx_conf({**digits_demo.model_conf(digits[0], "wrongsize"),
             "spark.mxsql.model.wrongsize.inputSize": "20"})
    with pytest.raises(PythonException, match=r"ModelLoadError: spark\.mxsql\.model\.wrongsize"
                                              r"\.inputSize: the network rejects input shape "
                                              r"\(1, 20, 20\)"):
        _one(spark, "SELECT mx_classify(content, 'wrongsize') FROM digits LIMIT 1")


def test_malformed_setting_fails_at_registration(spark, mx_conf):
    from mxsql.udfs.errors import ConfigError

    with pytest.raises(ConfigError, match=r"spark.mxsql.batchSize='0': must be a positive integer"):
        mx_conf({"spark.mxsql.batchSize": "0"})


def test_importing_the_catalog_imports_no_mxnet_and_keeps_pillows_bomb_guard():
    code = (
        "import sys\n"
        "from mxsql.registry.catalog import FUNCTIONS, register_all\n"
        "from mxsql.registry.config import settings_from_session\n"
        "assert 'mxnet' not in sys.modules, 'importing the catalog must not import mxnet'\n"
        "from PIL import Image\n"
        "assert Image.MAX_IMAGE_PIXELS, 'importing must leave Pillow its bomb guard'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


@pytest.fixture
def no_model(spark):
    """The shared session with no model configured; its models come back afterwards."""
    from mxsql.registry import register_all

    models = {key: value for key, value in spark.conf.getAll.items()
              if key.startswith("spark.mxsql.model.")}
    assert "spark.mxsql.model.default.uri" in models
    for key in models:
        spark.conf.unset(key)
    try:
        yield register_all
    finally:
        for key, value in models.items():
            spark.conf.set(key, value)
        register_all(spark)


def test_registration_imports_no_mxnet_and_needs_no_model(spark, no_model, monkeypatch):
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "mxnet", None)  # from here `import mxnet` fails
        no_model(spark)
    png = imagekit.encode(imagekit.gradient_rgb(48, 32), "PNG").hex()
    info = spark.sql(f"SELECT mx_image_info(X'{png}') AS info").first().info
    assert info.asDict() == {"format": "PNG", "width": 48, "height": 32, "mode": "RGB",
                             "error": None}
    with pytest.raises(PythonException, match=r"ConfigError: unknown model 'default': set "
                                              r"spark\.mxsql\.model\.default\.uri"):
        spark.sql(f"SELECT mx_classify(X'{png}')").collect()
