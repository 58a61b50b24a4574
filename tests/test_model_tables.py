"""mx_models() and mx_labels(): the configured models as SQL tables."""

import pytest


def test_mx_models_lists_each_model(spark):
    rows = {r.name: r for r in spark.sql("SELECT * FROM mx_models()").collect()}
    assert {"default", "resnet18"} <= set(rows)
    digits = rows["default"]
    assert digits.error is None
    assert digits.num_labels == 10
    assert digits.input_shape[0] == digits.channels
    assert len(digits.sha256_params) == 64


def test_mx_models_fingerprint_is_the_models(spark, digits):
    from mxsql.udfs import fingerprint
    from mxsql.udfs.artifacts import sha256_of
    from mxsql.udfs.config import parse_settings

    row = spark.sql("SELECT * FROM mx_models() WHERE name = 'default'").collect()[0]
    settings = parse_settings(dict(spark.sparkContext.getConf().getAll()))
    assert row.sha256_params == sha256_of(digits[0] + "-0000.params")
    assert row.fingerprint == fingerprint.model_fingerprint(settings.model("default"), settings)


def test_mx_models_shows_an_unreadable_model_without_fingerprint(spark, mx_conf, tmp_path):
    mx_conf({"spark.mxsql.model.gone.uri": str(tmp_path / "gone")})
    rows = {r.name: r for r in spark.sql("SELECT * FROM mx_models()").collect()}
    assert rows["gone"].fingerprint is None and rows["gone"].sha256_params is None
    assert "file not found" in rows["gone"].error
    assert rows["default"].fingerprint is not None


def test_mx_labels_in_index_order(spark):
    rows = spark.sql("SELECT * FROM mx_labels('default')").collect()
    assert [r.class_index for r in rows] == list(range(10))
    assert rows == spark.sql("SELECT * FROM mx_labels()").collect()


def test_mx_labels_unknown_model_names_configured_ones(spark):
    with pytest.raises(Exception, match="unknown model 'defualt'.*did you mean"):
        spark.sql("SELECT * FROM mx_labels('defualt')").collect()


def test_session_set_reaches_the_table_functions(spark):
    # The UDTF sees the session's SET (task properties): a new mean is a new fingerprint.
    query = "SELECT mean, fingerprint FROM mx_models() WHERE name = 'default'"
    before = spark.sql(query).collect()[0]
    spark.conf.set("spark.mxsql.model.default.mean", "3")
    try:
        after = spark.sql(query).collect()[0]
    finally:
        spark.conf.unset("spark.mxsql.model.default.mean")
    assert after.mean == [3.0]
    assert after.fingerprint != before.fingerprint
    assert spark.sql(query).collect()[0] == before


@pytest.mark.slow
def test_mx_labels_in_the_mxsql_shell(digits, tmp_path):
    from demo import digits as digits_demo
    from tests import shellkit

    run = shellkit.run_mxsql([
        *shellkit.conf_args(digits_demo.model_conf(digits[0])),
        "-e", "SELECT count(*) FROM mx_labels(); SELECT name FROM mx_models()",
    ], home=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["10", "default"]
